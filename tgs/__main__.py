"""The package run as a module: the same as the `tgs` command."""

from tgs.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
