"""corral.runtime."""
