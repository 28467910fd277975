"""corral.storage."""
