"""tgs.run."""
