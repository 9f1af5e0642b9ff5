"""tgs.post."""
