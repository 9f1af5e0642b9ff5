"""Run-length encoding in the competition format (pure numpy).

Pixels are numbered 1..H*W column-major (top to bottom, then left to right); a mask is written as
"start length" pairs separated by spaces; an empty mask is the empty string.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from tgs import IMAGE_SIZE
from tgs.errors import RLEError

SHAPE = (IMAGE_SIZE, IMAGE_SIZE)


def _runs(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, H, W) binary -> (image index, 1-based start, length) of every run, column-major."""
    n = masks.shape[0]
    flat = np.ascontiguousarray(masks.transpose(0, 2, 1)).reshape(n, -1).astype(bool)
    padded = np.zeros((n, flat.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = flat
    img, pos = np.nonzero(np.diff(padded, axis=1))
    # nonzero is row-major, so transitions alternate start, end within each image
    starts, ends = pos[0::2], pos[1::2]
    return img[0::2], starts + 1, ends - starts


def encode_batch(masks: np.ndarray) -> list[str]:
    """Binary masks (N, H, W) -> N RLE strings ("" for an empty mask)."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"expected masks of shape (N, H, W), got {masks.shape}")
    img, starts, lengths = _runs(masks)
    pairs = np.empty(2 * len(starts), dtype=np.int64)
    pairs[0::2], pairs[1::2] = starts, lengths
    text = pairs.astype(str)
    bounds = np.searchsorted(img, np.arange(masks.shape[0] + 1))
    return [" ".join(text[2 * a : 2 * b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def encode(mask: np.ndarray) -> str:
    """One binary mask (H, W) -> RLE string."""
    return encode_batch(np.asarray(mask)[None])[0]


def parse(rle: str | float | None, shape: tuple[int, int] = SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """RLE string -> (0-based starts, lengths), checking it is legal.

    Empty, None and NaN (pandas' reading of an empty cell) mean an empty mask. Raises RLEError when
    the string is not integer pairs, a start or length is not positive, runs are not sorted or
    overlap (touching runs are also rejected: Kaggle's encoder never writes them), or a run leaves
    the image.
    """
    if rle is None or (isinstance(rle, float) and np.isnan(rle)):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    tokens = str(rle).split()
    if not tokens:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    try:
        values = np.array([int(t) for t in tokens], dtype=np.int64)
    except ValueError as e:
        raise RLEError(f"non-integer token in RLE: {e}") from None
    if len(values) % 2:
        raise RLEError(f"odd number of values ({len(values)}): RLE must be 'start length' pairs")
    starts, lengths = values[0::2] - 1, values[1::2]
    if (starts < 0).any():
        raise RLEError("RLE start < 1 (pixels are numbered from 1)")
    if (lengths <= 0).any():
        raise RLEError("RLE run length <= 0")
    ends = starts + lengths
    if (ends > shape[0] * shape[1]).any():
        raise RLEError(f"RLE run ends past the last pixel {shape[0] * shape[1]}")
    if len(starts) > 1 and (starts[1:] <= ends[:-1]).any():
        raise RLEError("RLE runs are not sorted, overlap or touch")
    return starts, lengths


def decode(rle: str | float | None, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    """RLE string -> uint8 mask (H, W) of 0/1. Raises RLEError on an illegal string."""
    starts, lengths = parse(rle, shape)
    flat = np.zeros(shape[0] * shape[1] + 1, dtype=np.int8)
    np.add.at(flat, starts, 1)
    np.add.at(flat, starts + lengths, -1)
    return np.cumsum(flat[:-1]).astype(np.uint8).reshape(shape[1], shape[0]).T.copy()


def decode_batch(rles: Iterable[str | float | None], shape: tuple[int, int] = SHAPE) -> np.ndarray:
    """Sequence of RLE strings -> uint8 masks (N, H, W)."""
    rles = list(rles)
    size = shape[0] * shape[1]
    flat = np.zeros(len(rles) * (size + 1), dtype=np.int8)
    all_starts, all_ends = [], []
    for i, rle in enumerate(rles):
        starts, lengths = parse(rle, shape)
        offset = i * (size + 1)
        all_starts.append(starts + offset)
        all_ends.append(starts + lengths + offset)
    if rles:
        np.add.at(flat, np.concatenate(all_starts), 1)
        np.add.at(flat, np.concatenate(all_ends), -1)
    flat = np.cumsum(flat).reshape(len(rles), size + 1)[:, :size]
    return flat.astype(np.uint8).reshape(len(rles), shape[1], shape[0]).transpose(0, 2, 1).copy()


def is_legal(rle: str | float | None, shape: tuple[int, int] = SHAPE) -> bool:
    """True when `rle` parses as a legal RLE for `shape`."""
    try:
        parse(rle, shape)
    except RLEError:
        return False
    return True
