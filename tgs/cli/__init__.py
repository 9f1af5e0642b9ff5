"""`tgs ...` (or the package run as a module): the command line (argument parsing; the work
lives in the stage modules)."""
