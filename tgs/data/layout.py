"""Write a folder in the competition layout from arrays (used by `synth` and `holdout`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from tgs.core.errors import DataError
from tgs.data import rle
from tgs.data.io import TrainData


def write_png(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), array):
        raise DataError(f"cannot write {path}")


def write_image(path: Path, image: np.ndarray) -> None:
    """uint8 (101, 101) -> 3-channel 8-bit PNG with equal channels, as Kaggle ships them."""
    write_png(path, np.repeat(image[..., None], 3, axis=2))


def write_mask(path: Path, mask: np.ndarray) -> None:
    """0/1 (101, 101) -> 16-bit 0/65535 PNG when non-empty, 8-bit zeros when empty (as Kaggle)."""
    if mask.any():
        write_png(path, mask.astype(np.uint16) * 65535)
    else:
        write_png(path, np.zeros(mask.shape, np.uint8))


def write_layout(
    out: str | os.PathLike,
    train: TrainData,
    test_ids: Sequence[str],
    test_images: np.ndarray,
    test_z: np.ndarray,
    *,
    test_masks: np.ndarray | None = None,
) -> None:
    """Write train/{images,masks}, test/images, train.csv, depths.csv, sample_submission.csv.

    With `test_masks`, also write truth.csv (train.csv format) so submissions can be scored.
    """
    out = Path(out)
    for sub in ("train/images", "train/masks", "test/images"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for id_, img, mask in zip(train.ids, train.images, train.masks, strict=True):
        write_image(out / "train" / "images" / f"{id_}.png", img)
        write_mask(out / "train" / "masks" / f"{id_}.png", mask)
    for id_, img in zip(test_ids, test_images, strict=True):
        write_image(out / "test" / "images" / f"{id_}.png", img)
    pd.DataFrame({"id": train.ids, "rle_mask": rle.encode_batch(train.masks)}).to_csv(
        out / "train.csv", index=False
    )
    depths = pd.DataFrame({"id": [*train.ids, *test_ids], "z": [*train.z, *test_z]})
    depths["z"] = depths["z"].round().astype(int)
    depths.to_csv(out / "depths.csv", index=False)
    sample = pd.DataFrame({"id": list(test_ids), "rle_mask": "1 1"})
    sample.to_csv(out / "sample_submission.csv", index=False)
    if test_masks is not None:
        truth = pd.DataFrame({"id": list(test_ids), "rle_mask": rle.encode_batch(test_masks)})
        truth.to_csv(out / "truth.csv", index=False)
