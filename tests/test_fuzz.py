"""Property-based tests of the parsers a user's files go through: the RLE parser, the submission
validator and `KEY=VALUE` overrides. Whatever the input, each either accepts it or raises the
project's own error with a message; legal masks round-trip exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tgs.core.config import Config, load_config
from tgs.core.errors import ConfigError, RLEError, SubmissionError
from tgs.data import rle
from tgs.predict.submission import validate_file, write_submission

SHAPE = (7, 5)  # small images keep the search fast; the parser takes any shape
FAST = settings()  # examples per test: the profile's (tests/conftest.py)

# near-valid RLE text: numbers (some huge, negative or zero) and odd separators
_number = st.one_of(
    st.integers(-3, 40),
    st.integers(-(2**70), 2**70),
    st.sampled_from(["1e3", "0x10", "٣", "+4", "-0", "nan", "", "1.0"]),
)
_near_rle = st.lists(_number, max_size=12).flatmap(
    lambda xs: st.sampled_from([" ", "  ", "\t", ",", " \n"]).map(
        lambda sep: sep.join(str(x) for x in xs)
    )
)


@FAST
@given(st.one_of(st.text(max_size=60), _near_rle, st.none(), st.just(float("nan"))))
def test_rle_parse_accepts_or_raises_rle_error(text):
    """Random and near-valid strings: a legal parse decodes to a mask inside the image whose
    encoding parses to the same runs; anything else is an RLEError with a message."""
    try:
        starts, lengths = rle.parse(text, SHAPE)
    except RLEError as e:
        assert str(e)
        with pytest.raises(RLEError):
            rle.decode(text, SHAPE)
        assert not rle.is_legal(text, SHAPE)
        return
    assert rle.is_legal(text, SHAPE)
    mask = rle.decode(text, SHAPE)
    assert mask.shape == SHAPE and int(mask.sum()) == int(lengths.sum())
    again = rle.parse(rle.encode(mask), SHAPE)
    assert np.array_equal(again[0], starts) and np.array_equal(again[1], lengths)


@FAST
@given(st.lists(st.one_of(_near_rle, st.text(max_size=20)), min_size=1, max_size=6))
def test_decode_batch_agrees_with_decode(texts):
    """The batched decoder accepts exactly what the one-mask parser accepts, and decodes the
    same masks."""
    legal = [rle.is_legal(t, SHAPE) for t in texts]
    if all(legal):
        batch = rle.decode_batch(texts, SHAPE)
        assert np.array_equal(batch, np.stack([rle.decode(t, SHAPE) for t in texts]))
    else:
        with pytest.raises(RLEError, match=r"mask \d+"):
            rle.decode_batch(texts, SHAPE)


@FAST
@given(
    arrays(
        np.uint8,
        st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9)),
        elements=st.integers(0, 1),
    )
)
def test_encode_decode_round_trip(masks):
    """Any binary masks (N, H, W) -> RLE -> the same masks, one at a time and batched."""
    shape = masks.shape[1:]
    texts = rle.encode_batch(masks)
    assert texts == [rle.encode(m) for m in masks]
    assert np.array_equal(rle.decode_batch(texts, shape), masks.astype(bool))
    for m, t in zip(masks, texts, strict=True):
        assert (t == "") == (not m.any())  # the empty mask is the empty string, never "1 0"


IDS = ["a1", "b2", "c3"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("sample") / "sample_submission.csv"
    path.write_text("id,rle_mask\n" + "".join(f"{i},1 1\n" for i in IDS))
    return path


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_validator_on_random_bytes(sample, tmp_path, data):
    """A submission file of random bytes is accepted or refused with a SubmissionError (no
    pandas or decoding traceback)."""
    path = tmp_path / "sub.csv"
    path.write_bytes(data)
    try:
        assert validate_file(path, sample) == len(IDS)
    except SubmissionError as e:
        assert str(e)


_cell = st.one_of(_near_rle, st.sampled_from(["", "1 1", "1 3 10 2"]))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.permutations(IDS).flatmap(
        lambda ids: st.lists(st.sampled_from([*ids, "zz"]), min_size=2, max_size=4)
    ),
    st.lists(_cell, min_size=4, max_size=4),
)
def test_validator_on_near_valid_submissions(sample, tmp_path, ids, cells):
    """Near-valid submissions (missing, extra or repeated ids; bad RLEs): accepted exactly when
    the ids are the sample's once each and every RLE is legal for a 101x101 image."""
    path = tmp_path / "sub.csv"
    rows = "".join(f"{i},{c}\n" for i, c in zip(ids, cells, strict=False))
    path.write_text("id,rle_mask\n" + rows)
    ok = sorted(ids) == sorted(IDS) and all(rle.is_legal(c) for c in cells[: len(ids)])
    if ok:
        assert validate_file(path, sample) == len(IDS)
    else:
        with pytest.raises(SubmissionError):
            validate_file(path, sample)


@FAST
@given(arrays(np.uint8, (3, 101, 101), elements=st.integers(0, 1)))
def test_written_submission_validates_and_decodes(tmp_path_factory, masks):
    """What tgs writes always passes its own validator and decodes to the masks written."""
    folder = tmp_path_factory.mktemp("w")
    path = folder / "sub.csv"
    (folder / "sample.csv").write_text("id,rle_mask\n" + "".join(f"{i},\n" for i in IDS))
    write_submission(path, IDS, masks=masks, sample_ids=IDS)
    assert validate_file(path, folder / "sample.csv") == 3
    import pandas as pd

    got = pd.read_csv(path, dtype=str, keep_default_na=False)["rle_mask"].tolist()
    assert np.array_equal(rle.decode_batch(got), masks.astype(bool))


_key = st.one_of(
    st.sampled_from([f.name for f in __import__("dataclasses").fields(Config)]),
    st.sampled_from(["model_kwargs.n_filters", "lrr", "model_kwargs.", ".x", "", "a.b.c"]),
    st.text(max_size=12),
)
_value = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "[1, 2",
            "{a: 1",
            "null",
            "[]",
            "{}",
            "- x",
            ": :",
            "!!python/object:os.system",
            "1e400",
            "'",
        ]
    ),
    st.integers().map(str),
    st.floats(allow_nan=True).map(str),
)


@FAST
@given(st.lists(st.tuples(_key, st.sampled_from(["=", "==", ""]), _value), max_size=3))
def test_overrides_accept_or_raise_config_error(items):
    """`KEY=VALUE` overrides, random and near-valid: a Config whose keys took the values, or a
    ConfigError with a message (never a YAML, type or attribute error)."""
    overrides = [f"{k}{sep}{v}" for k, sep, v in items]
    assume(all("\x00" not in o for o in overrides))
    try:
        cfg = load_config(None, overrides)
    except ConfigError as e:
        assert str(e)
        return
    assert isinstance(cfg, Config)
