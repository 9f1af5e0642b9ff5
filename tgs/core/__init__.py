"""tgs.core."""
