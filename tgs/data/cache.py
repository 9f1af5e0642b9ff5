"""Decode a data folder's labelled set once: arrays cached in `DATA/.tgs-cache/train.npz`.

The cache is keyed by a fingerprint of every file it was made from (name, size, mtime of
train.csv, depths.csv and each train PNG): any change rebuilds it, so a stale cache is never
used. Building it is the first load: every mask PNG is cross-checked against its train.csv RLE
there, once, and ids without a depth are reported. A read-only data folder just goes uncached.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from tgs import __version__
from tgs.core.fileio import atomic_path
from tgs.data.io import TrainData, load_train

log = logging.getLogger(__name__)
CACHE_DIR = ".tgs-cache"
FORMAT = 1


def cache_path(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / CACHE_DIR / "train.npz"


def fingerprint(data_dir: str | os.PathLike) -> str:
    """sha256 over train.csv's and depths.csv's bytes and (relative name, size, mtime) of every
    train PNG: what the labelled arrays come from."""
    data_dir = Path(data_dir)

    h = hashlib.sha256(f"tgs-train-cache-v{FORMAT}-{__version__}".encode())
    for name in ("train.csv", "depths.csv"):  # small: their contents, not just size and mtime
        path = data_dir / name
        h.update(path.read_bytes() if path.is_file() else b"missing")
    entries = []
    for sub in ("train/images", "train/masks"):
        folder = data_dir / sub
        if folder.is_dir():
            entries.extend(sorted(folder.iterdir()))
    for path in entries:
        try:
            st = path.stat()
        except FileNotFoundError:
            h.update(f"{path.relative_to(data_dir)}:missing\n".encode())
            continue
        h.update(f"{path.relative_to(data_dir)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _read_cache(path: Path, key: str) -> TrainData | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["fingerprint"]) != key:
                return None
            return TrainData(z["ids"].tolist(), z["images"], z["masks"], z["z"])
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def _write_cache(path: Path, key: str, data: TrainData) -> None:
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                fingerprint=np.array(key),
                ids=np.array(data.ids),
                images=data.images,
                masks=data.masks,
                z=data.z,
            )
    except Exception as e:  # read-only or full data folder: work uncached
        log.warning("could not cache the decoded data in %s (%s): reading PNGs each time", path, e)


def report_missing_depths(data: TrainData, where: Path) -> None:
    """Warn, naming the ids, when some labelled ids have no depth in depths.csv."""
    missing = [data.ids[i] for i in np.flatnonzero(np.isnan(data.z))]
    if missing and len(missing) < len(data.ids):
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        log.warning(
            "%s has no depth for %d of %d train ids (%s); configs with depth_channel will refuse",
            where,
            len(missing),
            len(data.ids),
            shown,
        )


def load_train_cached(data_dir: str | os.PathLike) -> TrainData:
    """The labelled set as arrays: from the cache when it matches the files, else decoded (with
    the mask/RLE cross-check and the depth report) and cached."""
    data_dir = Path(data_dir)
    path, key = cache_path(data_dir), fingerprint(data_dir)
    if path.is_file():
        cached = _read_cache(path, key)
        if cached is not None:
            return cached
        log.info("%s is stale: decoding %s again", path, data_dir)
    data = load_train(data_dir, check_rle=True)
    report_missing_depths(data, data_dir / "depths.csv")
    _write_cache(path, key, data)
    return data
