"""Competition zip (as `kaggle competitions download` writes it) -> data folder."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

from tgs.core.errors import DataError
from tgs.core.fileio import atomic_dir
from tgs.data import io
from tgs.data.cache import load_train_cached

INNER_ZIPS = {"train.zip": "train", "test.zip": "test"}
REQUIRED = (*INNER_ZIPS, *io.CSV_FILES)


def _open_zip(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    try:
        zf = zipfile.ZipFile(path)
        bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise DataError(f"{path} is truncated or not a zip file ({e}); download it again") from None
    if bad is not None:
        raise DataError(f"{path}: member {bad} fails its CRC check; download it again")
    return zf


def _extract_inner(zf: zipfile.ZipFile, name: str, dest: Path, where: str) -> None:
    """Extract an inner zip's `images/` and `masks/` under `dest`, refusing odd paths."""
    for member in zf.namelist():
        if member.endswith("/"):
            continue
        parts = Path(member).parts
        if len(parts) != 2 or parts[0] not in ("images", "masks") or ".." in parts:
            raise DataError(f"{where}/{name}: unexpected member {member!r}")
    zf.extractall(dest)


def prepare(zip_path: str | os.PathLike, out: str | os.PathLike, force: bool = False) -> Path:
    """Unpack the competition zip into `out` (train/, test/, CSVs) and validate it.

    The folder is assembled beside `out` and renamed into place only once it loads cleanly, so a
    failure leaves nothing behind. Returns `out`.
    """
    zip_path, out = Path(zip_path), Path(out)
    outer = _open_zip(zip_path)
    names = set(outer.namelist())
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        raise DataError(f"{zip_path} lacks {', '.join(missing)}: is it the competition download?")
    with atomic_dir(out, overwrite=force) as tmp:
        for name in io.CSV_FILES:
            with outer.open(name) as src, open(tmp / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
        for name, sub in INNER_ZIPS.items():
            outer.extract(name, tmp)
            _unpack_inner(tmp / name, name, tmp / sub, str(zip_path))
            (tmp / name).unlink()
        _validate_as(tmp, out, zip_path)
    return out


def _unpack_inner(path: Path, name: str, dest: Path, where: str) -> None:
    """Inner zip `path` (train.zip or test.zip) -> its images/ and masks/ under `dest`."""
    inner = _open_zip(path)
    try:
        _extract_inner(inner, name, dest, where)
    finally:
        inner.close()


def _validate_as(tmp: Path, out: Path, source: Path) -> None:
    """`validate_folder(tmp)`, its errors naming `source` and the files as they will be in
    `out` (the user never sees the temporary folder)."""
    try:
        validate_folder(tmp)
    except DataError as e:
        raise DataError(f"{source}: {str(e).replace(str(tmp), str(out))}") from None


def prepare_folder(src: str | os.PathLike, out: str | os.PathLike, force: bool = False) -> Path:
    """The competition's files as a folder holds them (Kaggle mounts them under /kaggle/input:
    train.zip and test.zip, or train/ and test/ already unpacked, and the CSVs) -> the data
    folder `out`, validated; `src` is only read. Returns `out`."""
    src, out = Path(src), Path(out)
    missing = [n for n in io.CSV_FILES if not (src / n).is_file()]
    missing += [
        z for z, sub in INNER_ZIPS.items() if not (src / z).is_file() and not (src / sub).is_dir()
    ]
    if missing:
        raise DataError(f"{src} lacks {', '.join(missing)}: is it the competition's data?")
    with atomic_dir(out, overwrite=force) as tmp:
        for name in io.CSV_FILES:
            shutil.copyfile(src / name, tmp / name)
        for name, sub in INNER_ZIPS.items():
            if (src / name).is_file():
                _unpack_inner(src / name, name, tmp / sub, str(src))
            else:
                shutil.copytree(src / sub, tmp / sub)
        _validate_as(tmp, out, src)
    return out


def validate_folder(data_dir: str | os.PathLike) -> None:
    """Load everything once (images, masks vs train.csv RLE, test ids); raise DataError if off.
    The decoded train arrays are cached in the folder, so later stages do not decode again."""
    io.check_layout(data_dir)
    load_train_cached(data_dir)
    io.test_ids(data_dir)
