"""Read the competition layout: `train/images`, `train/masks`, `test/images` and the CSVs.

Images come back as single-channel uint8 (N, 101, 101); masks as uint8 0/1 (N, 101, 101).
Every error names the file (and id) that is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from tgs import IMAGE_SIZE
from tgs.core import commands
from tgs.core.errors import DataError, RLEError
from tgs.data import rle

CSV_FILES = ("train.csv", "depths.csv", "sample_submission.csv")
MASK_VALUES = (0, 255, 65535)


@dataclass
class TrainData:
    """The labelled set in memory: ids (N,), images uint8 (N, H, W), masks 0/1 uint8, z float."""

    ids: list[str]
    images: np.ndarray
    masks: np.ndarray
    z: np.ndarray

    def rows(self, ids: Sequence[str], where: str | os.PathLike = "the data folder") -> np.ndarray:
        """Row of each id (e.g. an OOF's ids); DataError naming the first unknown id."""
        index = {id_: i for i, id_ in enumerate(self.ids)}
        unknown = [i for i in ids if i not in index]
        if unknown:
            raise DataError(f"id {unknown[0]!r} is not in {where}'s train.csv: wrong --data?")
        return np.array([index[i] for i in ids], dtype=np.int64)

    def subset(self, index: Sequence[int] | np.ndarray) -> TrainData:
        index = np.asarray(index)
        ids = [self.ids[i] for i in index]
        return TrainData(ids, self.images[index], self.masks[index], self.z[index])


def read_png(path: str | os.PathLike) -> np.ndarray:
    """Raw PNG pixels (any depth/channels). Raises DataError if missing or unreadable."""
    path = Path(path)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    img = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if img is None:
        raise DataError(f"unreadable or truncated PNG: {path}")
    return img


def _check_size(img: np.ndarray, path: Path) -> None:
    if img.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{path} is {img.shape[1]}x{img.shape[0]}, expected 101x101")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Image PNG (8-bit, 1 or 3 equal channels) -> uint8 (101, 101)."""
    img = read_png(path)
    _check_size(img, Path(path))
    if img.ndim == 3:
        img = img[..., 0]
    if img.dtype != np.uint8:
        raise DataError(f"{path}: expected an 8-bit image, got {img.dtype}")
    return img


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Mask PNG (8-bit 0/255 or 16-bit 0/65535) -> uint8 0/1 (101, 101)."""
    img = read_png(path)
    _check_size(img, Path(path))
    if img.ndim == 3:
        img = img[..., 0]
    bad = np.setdiff1d(np.unique(img), MASK_VALUES)
    if bad.size:
        raise DataError(f"{path}: mask values {bad[:5].tolist()} are not 0/255/65535")
    return (img > 0).astype(np.uint8)


def read_rle_csv(path: str | os.PathLike) -> pd.DataFrame:
    """train.csv / submission-format CSV -> DataFrame(id, rle_mask) with "" for empty masks."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"cannot parse {path}: {e}") from None
    if list(df.columns[:2]) != ["id", "rle_mask"]:
        raise DataError(f"{path}: expected columns id,rle_mask, got {','.join(df.columns)}")
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise DataError(f"{path}: duplicate id {dup.iloc[0]!r} ({len(dup)} duplicates)")
    return df[["id", "rle_mask"]].reset_index(drop=True)


def read_depths(path: str | os.PathLike) -> pd.Series:
    """depths.csv -> Series of z (float) indexed by id."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    df = pd.read_csv(path, dtype={"id": str})
    if "id" not in df or "z" not in df:
        raise DataError(f"{path}: expected columns id,z, got {','.join(df.columns)}")
    return df.set_index("id")["z"].astype(float)


def _depths_for(data_dir: Path, ids: Sequence[str]) -> np.ndarray:
    path = data_dir / "depths.csv"
    if not path.exists():
        return np.full(len(ids), np.nan)
    return read_depths(path).reindex(list(ids)).to_numpy(dtype=float)


def require_depths(ids: Sequence[str], z: np.ndarray, where: str | os.PathLike) -> None:
    """Raise DataError naming the first id without a depth (NaN z), as a depth channel needs."""
    missing = np.flatnonzero(np.isnan(np.asarray(z, dtype=float)))
    if missing.size:
        raise DataError(
            f"{where} has no depth for id {ids[int(missing[0])]!r} ({missing.size} ids), "
            "needed by depth_channel"
        )


def _read_many(reader: Callable[[Path], np.ndarray], paths: Sequence[Path]) -> np.ndarray:
    out = np.empty((len(paths), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        for i, arr in enumerate(pool.map(reader, paths)):
            out[i] = arr
    return out


def _check_files(folder: Path, ids: Sequence[str], listed_in: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"missing folder: {folder}")
    present = {p.stem for p in folder.glob("*.png")}
    missing = [i for i in ids if i not in present]
    if missing:
        raise DataError(
            f"id {missing[0]!r} is in {listed_in} but {folder / (missing[0] + '.png')} "
            f"does not exist ({len(missing)} missing)"
        )
    extra = sorted(present - set(ids))
    if extra:
        raise DataError(
            f"{folder / (extra[0] + '.png')} has no row in {listed_in} ({len(extra)} extra files)"
        )
    return [folder / f"{i}.png" for i in ids]


def id_mismatch(have: Sequence[str], want: Sequence[str]) -> str | None:
    """None when the id sets agree, else "N missing, M unknown; first: ..." for a message."""
    extra, missing = sorted(set(have) - set(want)), sorted(set(want) - set(have))
    if not extra and not missing:
        return None
    first = f"unknown id {extra[0]!r}" if extra else f"missing id {missing[0]!r}"
    return f"{len(missing)} missing, {len(extra)} unknown; first: {first}"


def check_masks_against_rle(ids: Sequence[str], masks: np.ndarray, rles: Sequence[str], csv: Path):
    """Raise DataError naming the first id whose mask differs from its RLE in `csv`."""
    for i, (id_, text) in enumerate(zip(ids, rles, strict=True)):
        try:
            decoded = rle.decode(text)
        except RLEError as e:
            raise DataError(f"{csv}: id {id_!r} has a malformed RLE: {e}") from None
        if not np.array_equal(decoded, masks[i]):
            raise DataError(f"{csv}: id {id_!r}: mask PNG disagrees with its RLE")


def load_train(data_dir: str | os.PathLike, check_rle: bool = True) -> TrainData:
    """Load every labelled image into memory, in train.csv order.

    check_rle: cross-check each mask PNG against its train.csv RLE (about a second for 4000).
    """
    data_dir = Path(data_dir)
    csv = data_dir / "train.csv"
    df = read_rle_csv(csv)
    ids = df["id"].tolist()
    if not ids:
        raise DataError(f"{csv} has no rows")
    image_paths = _check_files(data_dir / "train" / "images", ids, csv)
    mask_paths = _check_files(data_dir / "train" / "masks", ids, csv)
    images = _read_many(read_image, image_paths)
    masks = _read_many(read_mask, mask_paths)
    if check_rle:
        check_masks_against_rle(ids, masks, df["rle_mask"].tolist(), csv)
    return TrainData(ids, images, masks, _depths_for(data_dir, ids))


def test_ids(data_dir: str | os.PathLike) -> list[str]:
    """Test ids in sample_submission.csv order, checked against `test/images`."""
    data_dir = Path(data_dir)
    csv = data_dir / "sample_submission.csv"
    ids = read_rle_csv(csv)["id"].tolist()
    _check_files(data_dir / "test" / "images", ids, csv)
    return ids


def iter_test_images(
    data_dir: str | os.PathLike, ids: Sequence[str], batch_size: int = 256
) -> Iterator[tuple[list[str], np.ndarray]]:
    """Yield (ids, uint8 images (B, 101, 101)) batches from `test/images`, reading lazily: the
    next batch is decoded in the background while the caller works on this one (two batches in
    memory at most)."""
    folder = Path(data_dir) / "test" / "images"
    chunks = [list(ids[s : s + batch_size]) for s in range(0, len(ids), batch_size)]

    def read(chunk: list[str]) -> np.ndarray:
        return _read_many(read_image, [folder / f"{i}.png" for i in chunk])

    with ThreadPoolExecutor(max_workers=1) as ahead:
        pending = ahead.submit(read, chunks[0]) if chunks else None
        for k, chunk in enumerate(chunks):
            images = pending.result()
            if k + 1 < len(chunks):
                pending = ahead.submit(read, chunks[k + 1])
            yield chunk, images


def check_layout(data_dir: str | os.PathLike) -> None:
    """Raise DataError naming the first missing piece of the competition layout."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data folder {data_dir} does not exist")
    for name in CSV_FILES:
        if not (data_dir / name).is_file():
            raise DataError(f"missing file: {data_dir / name} (run `{commands.prepare()}`?)")
    for sub in ("train/images", "train/masks", "test/images"):
        if not (data_dir / sub).is_dir():
            raise DataError(f"missing folder: {data_dir / sub}")
