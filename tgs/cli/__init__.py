"""`tgs ...` / `python -m tgs ...`: the command line (argument parsing; the work lives in the
stage modules)."""
