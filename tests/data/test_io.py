import shutil
import zipfile

import cv2
import numpy as np
import pandas as pd
import pytest

from tests.conftest import real_zip
from tests.helpers import pack_competition_zip
from tgs.core.errors import DataError
from tgs.data import io, rle
from tgs.data.prepare import prepare
from tgs.data.synth import make_synthetic


def test_synth_layout_and_formats(synth_dir):
    for name in ("train.csv", "depths.csv", "sample_submission.csv", "truth.csv"):
        assert (synth_dir / name).is_file()
    train = pd.read_csv(synth_dir / "train.csv", dtype=str)
    some = train["id"].iloc[0]
    img = cv2.imread(str(synth_dir / "train/images" / f"{some}.png"), cv2.IMREAD_UNCHANGED)
    assert img.shape == (101, 101, 3) and img.dtype == np.uint8
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
    depths = {}
    for id_, text in zip(train["id"], train["rle_mask"].fillna(""), strict=True):
        m = cv2.imread(str(synth_dir / "train/masks" / f"{id_}.png"), cv2.IMREAD_UNCHANGED)
        depths[m.dtype.name] = depths.get(m.dtype.name, 0) + 1
        if text:  # non-empty masks are 16-bit 0/65535, empty ones 8-bit, as Kaggle
            assert m.dtype == np.uint16 and set(np.unique(m)) <= {0, 65535}
        else:
            assert m.dtype == np.uint8 and m.max() == 0
    assert set(depths) == {"uint8", "uint16"}
    sample = pd.read_csv(synth_dir / "sample_submission.csv", dtype=str)
    assert (sample["rle_mask"] == "1 1").all() and len(sample) == 20


def test_loader_reads_synth_back(synth_dir):
    data = io.load_train(synth_dir, check_rle=True)
    assert data.images.shape == (60, 101, 101) and data.images.dtype == np.uint8
    assert data.masks.shape == (60, 101, 101) and set(np.unique(data.masks)) <= {0, 1}
    assert np.isfinite(data.z).all()
    truth = io.read_rle_csv(synth_dir / "truth.csv")
    assert truth["id"].tolist() == io.test_ids(synth_dir)
    ids = io.test_ids(synth_dir)
    batches = list(io.iter_test_images(synth_dir, ids, batch_size=8))
    assert [len(b[0]) for b in batches] == [8, 8, 4]


def test_synth_statistics_and_determinism():
    a = make_synthetic(400, seed=3)
    b = make_synthetic(400, seed=3)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.ids == b.ids
    cov = a.masks.mean(axis=(1, 2))
    assert 0.30 < (cov == 0).mean() < 0.48  # ~39% empty
    blank = a.images.reshape(400, -1).std(axis=1) == 0
    assert blank.any() and (cov[blank] == 0).all()  # blank images have empty masks
    assert (cov > 0.9).any() and ((cov > 0) & (cov < 0.1)).any()  # near-full and small
    widths = a.masks.any(axis=1).sum(axis=1)  # columns touched
    heights = a.masks.any(axis=2).sum(axis=1)
    assert ((widths > 0) & (widths < 15) & (heights > 90)).any()  # thin vertical bodies
    c = make_synthetic(50, seed=4)
    assert not np.array_equal(c.images, a.images[:50])


def test_prepare_unpacks_kaggle_zip(competition_zip, tmp_path, synth_dir):
    out = prepare(competition_zip, tmp_path / "data")
    for sub in ("train/images", "train/masks", "test/images"):
        assert (out / sub).is_dir()
    a, b = io.load_train(out), io.load_train(synth_dir)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    with pytest.raises(Exception, match="already exists"):
        prepare(competition_zip, tmp_path / "data")


def test_prepare_truncated_zip_leaves_nothing(competition_zip, tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(competition_zip.read_bytes()[: competition_zip.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated"):
        prepare(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.zip"]


def test_prepare_mask_disagreeing_with_rle_leaves_nothing(synth_dir, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(synth_dir, data)
    df = pd.read_csv(data / "train.csv", dtype=str, keep_default_na=False)
    victim = df.loc[df["rle_mask"] != "", "id"].iloc[0]
    df.loc[df["id"] == victim, "rle_mask"] = "1 3"
    df.to_csv(data / "train.csv", index=False)
    (tmp_path / "z").mkdir()
    zpath = pack_competition_zip(data, tmp_path / "z")
    with pytest.raises(DataError, match=victim):
        prepare(zpath, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_prepare_missing_member(tmp_path):
    z = tmp_path / "x.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("train.csv", "id,rle_mask\n")
    with pytest.raises(DataError, match="lacks"):
        prepare(z, tmp_path / "out")


@pytest.fixture
def data_copy(synth_dir, tmp_path):
    d = tmp_path / "d"
    shutil.copytree(synth_dir, d)
    return d


def first_id(d):
    return pd.read_csv(d / "train.csv", dtype=str)["id"].iloc[0]


def test_missing_image_named(data_copy):
    id_ = first_id(data_copy)
    (data_copy / "train/images" / f"{id_}.png").unlink()
    with pytest.raises(DataError, match=f"{id_}.png"):
        io.load_train(data_copy)


def test_unreadable_png_named(data_copy):
    id_ = first_id(data_copy)
    p = data_copy / "train/images" / f"{id_}.png"
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(DataError, match=f"unreadable.*{id_}"):
        io.load_train(data_copy)


def test_wrong_size_named(data_copy):
    id_ = first_id(data_copy)
    cv2.imwrite(str(data_copy / "train/images" / f"{id_}.png"), np.zeros((100, 101, 3), np.uint8))
    with pytest.raises(DataError, match=f"{id_}.png is 101x100"):
        io.load_train(data_copy)


def test_bad_mask_values_named(data_copy):
    id_ = first_id(data_copy)
    cv2.imwrite(str(data_copy / "train/masks" / f"{id_}.png"), np.full((101, 101), 7, np.uint8))
    with pytest.raises(DataError, match=f"{id_}.png: mask values"):
        io.load_train(data_copy)


def test_id_without_image_and_extra_image(data_copy):
    df = pd.read_csv(data_copy / "train.csv", dtype=str, keep_default_na=False)
    extra = pd.DataFrame({"id": ["deadbeef00"], "rle_mask": [""]})
    pd.concat([df, extra]).to_csv(data_copy / "train.csv", index=False)
    with pytest.raises(DataError, match="deadbeef00"):
        io.load_train(data_copy)
    df.iloc[1:].to_csv(data_copy / "train.csv", index=False)
    with pytest.raises(DataError, match=f"{df['id'].iloc[0]}.png has no row"):
        io.load_train(data_copy)


def test_duplicate_id(data_copy):
    df = pd.read_csv(data_copy / "train.csv", dtype=str, keep_default_na=False)
    pd.concat([df, df.iloc[:1]]).to_csv(data_copy / "train.csv", index=False)
    with pytest.raises(DataError, match="duplicate id"):
        io.load_train(data_copy)


def test_rle_disagreement_named(data_copy):
    df = pd.read_csv(data_copy / "train.csv", dtype=str, keep_default_na=False)
    victim = df["id"].iloc[2]
    df.loc[2, "rle_mask"] = "5 5" if df.loc[2, "rle_mask"] == "" else ""
    df.to_csv(data_copy / "train.csv", index=False)
    with pytest.raises(DataError, match=f"{victim}.*disagrees"):
        io.load_train(data_copy)
    io.load_train(data_copy, check_rle=False)  # the cross-check is what catches it


def test_sixteen_bit_and_eight_bit_masks_read_as_binary(tmp_path):
    m16 = np.zeros((101, 101), np.uint16)
    m16[3:9, 4:6] = 65535
    cv2.imwrite(str(tmp_path / "a.png"), m16)
    cv2.imwrite(str(tmp_path / "b.png"), (m16 > 0).astype(np.uint8) * 255)
    a, b = io.read_mask(tmp_path / "a.png"), io.read_mask(tmp_path / "b.png")
    assert a.dtype == np.uint8 and a.sum() == 12
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # trains or spawns processes
@pytest.mark.skipif(real_zip() is None, reason="shared real data not present")
def test_real_zip_prepares_and_rle_reproduces_train_csv(tmp_path):
    out = prepare(real_zip(), tmp_path / "real")  # validates every mask against train.csv
    data = io.load_train(out, check_rle=False)
    train = io.read_rle_csv(out / "train.csv")
    assert len(data.ids) == 3017 and train["id"].tolist() == data.ids
    assert rle.encode_batch(data.masks) == train["rle_mask"].tolist()
    assert 0.35 < (data.masks.reshape(3017, -1).max(axis=1) == 0).mean() < 0.43
    assert len(io.test_ids(out)) == 2000
