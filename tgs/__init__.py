"""tgs: a toolkit for Kaggle's TGS Salt Identification Challenge (101x101 salt segmentation)."""

__version__ = "0.1.0"

IMAGE_SIZE = 101
COMPETITION = "tgs-salt-identification-challenge"
