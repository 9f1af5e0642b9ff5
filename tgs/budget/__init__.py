"""tgs.budget."""
