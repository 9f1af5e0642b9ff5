"""Gallery tiles: the image beside the same image with the truth tinted and the prediction
outlined, at native 101 px (the page upscales them nearest-neighbour, so every pixel of a
boundary shows)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

GAP = 2  # white pixels between the two panels
TRUTH = np.array([0, 200, 70], np.uint8)  # green: the true salt area
PRED = np.array([255, 30, 30], np.uint8)  # red: the predicted salt boundary
TINT = 0.35  # how strongly the true salt area is tinted


def boundary(mask: np.ndarray) -> np.ndarray:
    """Binary mask (H, W) -> bool (H, W): mask pixels with a 4-neighbour outside the mask or
    on the image border, so every contour is closed (a full mask is outlined by a frame)."""
    m = np.asarray(mask, bool)
    p = np.pad(m, 1, mode="constant", constant_values=False)
    inner = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~inner


def overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """uint8 image (H, W), binary truth and prediction (H, W) -> RGB uint8 (H, W, 3): the true
    salt tinted green, the predicted salt outlined red."""
    rgb = np.repeat(np.asarray(image, np.float32)[..., None], 3, axis=2)
    t = np.asarray(truth, bool)
    rgb[t] = (1 - TINT) * rgb[t] + TINT * TRUTH
    out = rgb.round().astype(np.uint8)
    out[boundary(pred)] = PRED
    return out


def tile(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, 2W + GAP, 3): the plain image, a white gap, the overlay."""
    plain = np.repeat(np.asarray(image, np.uint8)[..., None], 3, axis=2)
    gap = np.full((plain.shape[0], GAP, 3), 255, np.uint8)
    return np.concatenate([plain, gap, overlay(image, truth, pred)], axis=1)


def save_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write an RGB uint8 array as an optimised PNG."""
    Image.fromarray(rgb).save(path, optimize=True)
