"""Synthetic seismic data in the exact competition layout (the built-in default data).

Images: layered reflectors, folded and dipping, with noise. Salt: smooth bodies (domes from
below, blobs, near-full sheets, thin vertical stocks) filled with a weak chaotic texture and
outlined by a strong reflection. About 39% of masks are empty and ~2% of images are blank
(constant, empty mask), as in the real data. Deterministic for a seed.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from tgs import IMAGE_SIZE
from tgs.core.fileio import atomic_dir
from tgs.data.io import TrainData
from tgs.data.layout import write_layout

N = IMAGE_SIZE
_Y, _X = np.mgrid[0:N, 0:N].astype(np.float32)
# salt body kinds and their shares among non-empty masks
KINDS = ("dome", "blob", "sheet", "stock", "flank")
KIND_P = (0.35, 0.22, 0.15, 0.13, 0.15)
P_EMPTY, P_BLANK = 0.39, 0.025


def _smooth_curve(rng: np.random.Generator, n_terms: int = 3, scale: float = 1.0) -> np.ndarray:
    """A smooth random function on 0..N-1 (sum of a few sinusoids), shape (N,)."""
    t = np.arange(N, dtype=np.float32) / N
    out = np.zeros(N, np.float32)
    for k in range(1, n_terms + 1):
        out += rng.normal(0, scale / k) * np.sin(2 * np.pi * (k * t / 2 + rng.uniform()))
    return out


def _background(rng: np.random.Generator) -> np.ndarray:
    """Layered, folded, dipping reflectors with noise, float (N, N) around 0."""
    series = cv2.GaussianBlur(
        rng.normal(0, 1, (1, 600)).astype(np.float32), (0, 0), rng.uniform(1, 3)
    )[0]
    series /= series.std() + 1e-6
    fold = _smooth_curve(rng, 3, rng.uniform(2, 14))[None, :]
    dip = rng.uniform(-0.35, 0.35)
    depth = _Y * rng.uniform(0.5, 1.6) + fold + dip * _X + 200
    img = np.interp(depth.ravel(), np.arange(series.size), series).reshape(N, N)
    img += rng.normal(0, rng.uniform(0.15, 0.45), (N, N))
    return img.astype(np.float32)


def _body(rng: np.random.Generator, kind: str) -> np.ndarray:
    """A salt mask of the given kind, bool (N, N)."""
    if kind == "dome":  # salt rising from below: everything under a smooth surface
        top = rng.uniform(15, 95) + _smooth_curve(rng, 3, rng.uniform(5, 25))
        return _Y > top[None, :]
    if kind == "sheet":  # near-full: salt everywhere but a thin sliver at the top
        top = rng.uniform(-10, 12) + _smooth_curve(rng, 2, 4)
        return _Y > top[None, :]
    if kind == "flank":  # a steep side boundary
        edge = rng.uniform(10, 90) + _smooth_curve(rng, 3, rng.uniform(3, 15))
        side = _X > edge[:, None]
        return side if rng.uniform() < 0.5 else ~side
    if kind == "stock":  # thin vertical body
        centre = rng.uniform(10, 90) + _smooth_curve(rng, 2, 4)
        width = rng.uniform(2, 9)
        return np.abs(_X - centre[:, None]) < width / 2
    field = cv2.GaussianBlur(rng.normal(0, 1, (N, N)).astype(np.float32), (0, 0), 12)
    return field > np.quantile(field, 1 - rng.uniform(0.03, 0.45))


def _render(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """Background with the salt texture and boundary reflection painted in, uint8 (N, N)."""
    img = _background(rng)
    if mask.any():
        chaos = cv2.GaussianBlur(rng.normal(0, 1, (N, N)).astype(np.float32), (0, 0), 1.5)
        salt = 0.35 * chaos / (chaos.std() + 1e-6) + rng.normal(0, 0.2, (N, N))
        img = np.where(mask, salt + rng.uniform(-0.4, 0.4), img)
        m8 = mask.astype(np.uint8)
        edge = cv2.morphologyEx(m8, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(
            np.float32
        )
        img += rng.choice([-1, 1]) * rng.uniform(1.5, 3.0) * cv2.GaussianBlur(edge, (0, 0), 1.0)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.5))
    scaled = 128 + rng.uniform(18, 40) * img + rng.uniform(-25, 25)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def make_sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One (image uint8 (N, N), mask uint8 0/1 (N, N)) pair."""
    u = rng.uniform()
    if u < P_BLANK:
        return np.full((N, N), rng.integers(0, 256), np.uint8), np.zeros((N, N), np.uint8)
    mask = np.zeros((N, N), bool)
    if u >= P_EMPTY:
        mask = _body(rng, KINDS[rng.choice(len(KINDS), p=KIND_P)])
    return _render(rng, mask), mask.astype(np.uint8)


def make_synthetic(n: int, seed: int) -> TrainData:
    """n synthetic samples with unique 10-hex-digit ids and depths z in 50..960."""
    rng = np.random.default_rng(seed)
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        id_ = rng.bytes(5).hex()
        if id_ not in seen:
            seen.add(id_)
            ids.append(id_)
    pairs = [make_sample(rng) for _ in range(n)]
    images = np.stack([p[0] for p in pairs]) if n else np.zeros((0, N, N), np.uint8)
    masks = np.stack([p[1] for p in pairs]) if n else np.zeros((0, N, N), np.uint8)
    z = rng.integers(50, 960, n).astype(float)
    return TrainData(ids, images, masks, z)


def synth(
    out: str | os.PathLike,
    n_train: int = 800,
    n_test: int = 400,
    seed: int = 0,
    force: bool = False,
) -> Path:
    """Write a synthetic dataset in the competition layout, with truth.csv for its test images."""
    if n_train < 1 or n_test < 1:
        raise ValueError("synth needs at least one train and one test image")
    data = make_synthetic(n_train + n_test, seed)
    train = data.subset(np.arange(n_train))
    test = data.subset(np.arange(n_train, n_train + n_test))
    with atomic_dir(out, overwrite=force) as tmp:
        write_layout(tmp, train, test.ids, test.images, test.z, test_masks=test.masks)
    return Path(out)
