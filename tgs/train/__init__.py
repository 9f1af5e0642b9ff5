"""tgs.train."""
