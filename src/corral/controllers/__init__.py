"""corral.controllers."""
