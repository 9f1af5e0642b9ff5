"""tgs: a toolkit for Kaggle's TGS Salt Identification Challenge (101x101 salt segmentation)."""

__version__ = "1.0.0"  # the one place: pyproject reads it (setuptools dynamic)

IMAGE_SIZE = 101
COMPETITION = "tgs-salt-identification-challenge"
