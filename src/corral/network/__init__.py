"""corral.network."""
