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


def _encode_one(mask: np.ndarray) -> str:
    """(H, W) binary -> RLE string: column-major transitions of one padded flat vector."""
    flat = np.zeros(mask.size + 2, dtype=np.int8)
    flat[1:-1] = mask.T.reshape(-1) != 0
    runs = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs[1::2] -= runs[::2]
    return " ".join(map(str, runs.tolist()))


def encode_batch(masks: np.ndarray) -> list[str]:
    """Binary masks (N, H, W) -> N RLE strings ("" for an empty mask).

    One C-level pass per mask (transpose, compare, nonzero) and a single join: measured faster
    than batching the transitions of all masks at once, which is memory-bound at 18000 masks.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"expected masks of shape (N, H, W), got {masks.shape}")
    return [_encode_one(m) for m in masks]


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
        values = np.array(tokens, dtype=np.int64)
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
    flat[starts] = 1  # legal runs neither overlap nor touch, so starts and ends are distinct
    flat[starts + lengths] = -1
    return np.cumsum(flat[:-1], dtype=np.int8).view(np.uint8).reshape(shape[1], shape[0]).T.copy()


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
        flat[np.concatenate(all_starts)] = 1  # distinct positions: runs never overlap or touch
        flat[np.concatenate(all_ends)] = -1
    flat = np.cumsum(flat, dtype=np.int8).view(np.uint8).reshape(len(rles), size + 1)[:, :size]
    return flat.reshape(len(rles), shape[1], shape[0]).transpose(0, 2, 1).copy()


def is_legal(rle: str | float | None, shape: tuple[int, int] = SHAPE) -> bool:
    """True when `rle` parses as a legal RLE for `shape`."""
    try:
        parse(rle, shape)
    except RLEError:
        return False
    return True
