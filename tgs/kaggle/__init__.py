"""tgs.kaggle."""
