"""corral.roles."""
