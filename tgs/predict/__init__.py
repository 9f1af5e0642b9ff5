"""tgs.predict."""
