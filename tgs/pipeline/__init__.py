"""tgs.pipeline."""
