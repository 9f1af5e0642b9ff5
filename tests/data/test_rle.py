import numpy as np
import pytest

from tgs.core.errors import RLEError
from tgs.data import rle


def test_known_strings_column_major_one_indexed():
    m = np.zeros((101, 101), np.uint8)
    m[0, 0] = 1  # pixel 1
    assert rle.encode(m) == "1 1"
    m[:, 1] = 1  # second column: pixels 102..202, a run of 101
    assert rle.encode(m) == "1 1 102 101"
    m2 = np.zeros((101, 101), np.uint8)
    m2[100, 100] = 1  # last pixel
    assert rle.encode(m2) == "10201 1"
    m3 = np.zeros((101, 101), np.uint8)
    m3[5:8, 0] = 1  # rows 5..7 of column 0 -> pixels 6..8
    m3[0, 1] = 1  # row 0 of column 1 -> pixel 102
    assert rle.encode(m3) == "6 3 102 1"


def test_empty_and_full():
    assert rle.encode(np.zeros((101, 101))) == ""
    assert rle.encode(np.ones((101, 101))) == "1 10201"
    assert rle.decode("").sum() == 0
    assert rle.decode(float("nan")).sum() == 0  # pandas reads an empty cell as NaN
    assert rle.decode(None).sum() == 0
    assert rle.decode("1 10201").all()


def test_sample_submission_one_one_is_one_pixel():
    m = rle.decode("1 1")
    assert m.sum() == 1 and m[0, 0] == 1


def test_round_trip_batch_random():
    rng = np.random.default_rng(0)
    masks = (rng.uniform(size=(50, 101, 101)) < rng.uniform(size=(50, 1, 1))).astype(np.uint8)
    masks[0] = 0
    masks[1] = 1
    strings = rle.encode_batch(masks)
    assert strings[0] == "" and strings[1] == "1 10201"
    np.testing.assert_array_equal(rle.decode_batch(strings), masks)
    for s, m in zip(strings, masks, strict=True):
        np.testing.assert_array_equal(rle.decode(s), m)


def test_batch_matches_single():
    rng = np.random.default_rng(1)
    masks = rng.integers(0, 2, (5, 101, 101))
    assert rle.encode_batch(masks) == [rle.encode(m) for m in masks]


@pytest.mark.parametrize(
    "bad",
    [
        *["1", "a b", "0 5", "5 0", "5 -1", "10 5 3 2", "1 5 5 2", "1 5 6 2", "10200 3", "1.5 2"],
        "1 1 3 9223372036854775806",  # start + length overflows int64 (found by hypothesis)
    ],
)
def test_illegal_strings_rejected(bad):
    with pytest.raises(RLEError):
        rle.parse(bad)
    assert not rle.is_legal(bad)


def test_legal_strings_accepted():
    assert rle.is_legal("1 5 7 2")
    assert rle.is_legal("10201 1")
    assert rle.is_legal("")


@pytest.mark.parametrize(
    "bad",
    [
        *["1", "a b", "0 5", "5 0", "5 -1", "10 5 3 2", "1 5 5 2", "1 5 6 2", "10200 3", "1.5 2"],
        "1 1 3 9223372036854775806",  # start + length overflows int64 (found by hypothesis)
    ],
)
def test_batch_rejects_and_names_the_bad_string(bad):
    with pytest.raises(RLEError, match="mask 2:"):
        rle.decode_batch(["1 1", "", bad, "5 5"])


def test_batch_accepts_any_whitespace_and_missing_values():
    """Non-canonical spacing takes the string-by-string path and decodes the same masks."""
    canon = rle.decode_batch(["1 5 7 2", "", "", "10201 1"])
    loose = rle.decode_batch([" 1  5\t7 2 ", float("nan"), None, "10201 1\n"])
    np.testing.assert_array_equal(loose, canon)
    assert rle.decode_batch([]).shape == (0, 101, 101)


def test_batch_chunk_boundaries_with_full_and_empty_masks():
    """Runs that end at a mask's last pixel next to a run at the next mask's first pixel, across
    the decoder's chunk boundary, decode exactly."""
    rng = np.random.default_rng(2)
    n = 2 * rle._CHUNK + 3
    masks = (rng.uniform(size=(n, 101, 101)) < 0.5).astype(np.uint8)
    masks[rle._CHUNK - 2 : rle._CHUNK + 2] = 1
    masks[rle._CHUNK + 2] = 0
    masks[-1] = 1
    np.testing.assert_array_equal(rle.decode_batch(rle.encode_batch(masks)), masks)
