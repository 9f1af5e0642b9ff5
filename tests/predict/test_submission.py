import numpy as np
import pandas as pd
import pytest

from tgs.cli.main import main
from tgs.core.errors import SubmissionError
from tgs.data import rle
from tgs.predict.submission import score_file, validate_file, write_submission


@pytest.fixture
def sample(tmp_path):
    ids = [f"id{i:03d}" for i in range(6)]
    path = tmp_path / "sample_submission.csv"
    pd.DataFrame({"id": ids, "rle_mask": "1 1"}).to_csv(path, index=False)
    return ids, path


def test_writer_orders_like_sample_and_round_trips(sample, tmp_path):
    ids, sample_path = sample
    rng = np.random.default_rng(0)
    masks = (rng.uniform(size=(6, 101, 101)) < 0.2).astype(np.uint8)
    masks[2] = 0
    shuffled = [5, 3, 1, 0, 2, 4]
    out = write_submission(
        tmp_path / "s.csv", [ids[i] for i in shuffled], masks[shuffled], sample_ids=ids
    )
    df = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert df["id"].tolist() == ids
    assert df["rle_mask"].iloc[2] == ""
    np.testing.assert_array_equal(rle.decode_batch(df["rle_mask"]), masks)
    assert validate_file(out, sample_path) == 6
    assert not list(tmp_path.glob(".*tmp"))  # no temporary left


def test_writer_refuses_wrong_ids_and_writes_nothing(sample, tmp_path):
    ids, _ = sample
    with pytest.raises(SubmissionError, match="missing id"):
        write_submission(tmp_path / "s.csv", ids[:-1], np.zeros((5, 101, 101)), sample_ids=ids)
    assert not (tmp_path / "s.csv").exists()


def write_rows(path, rows):
    pd.DataFrame(rows, columns=["id", "rle_mask"]).to_csv(path, index=False)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda rows: rows[:-1], "missing id"),
        (lambda rows: rows + [["zzz", ""]], "unknown id"),
        (lambda rows: rows + [rows[0]], "duplicate id"),
        (lambda rows: [[rows[0][0], "5 2 3 1"]] + rows[1:], "not sorted"),
        (lambda rows: [[rows[0][0], "0 2"]] + rows[1:], "start < 1"),
        (lambda rows: [[rows[0][0], "10200 5"]] + rows[1:], "past the last pixel"),
        (lambda rows: [[rows[0][0], "1 5 3 2"]] + rows[1:], "overlap"),
        (lambda rows: [[rows[0][0], "1 2 3"]] + rows[1:], "odd number"),
        (lambda rows: [[rows[0][0], "x 2"]] + rows[1:], "non-integer"),
    ],
)
def test_validator_rejects_each_bad_kind(sample, tmp_path, mutate, match):
    ids, sample_path = sample
    rows = [[i, "1 3"] for i in ids]
    write_rows(tmp_path / "bad.csv", mutate(rows))
    with pytest.raises(SubmissionError, match=match):
        validate_file(tmp_path / "bad.csv", sample_path)
    assert main(["validate", str(tmp_path / "bad.csv"), "--sample", str(sample_path)]) == 1


def test_validator_rejects_wrong_header(sample, tmp_path):
    _, sample_path = sample
    (tmp_path / "h.csv").write_text("ImageId,EncodedPixels\nid000,1 1\n")
    with pytest.raises(SubmissionError, match="columns"):
        validate_file(tmp_path / "h.csv", sample_path)


def test_cli_validate_and_score(sample, tmp_path, capsys):
    ids, sample_path = sample
    truth = tmp_path / "truth.csv"
    write_rows(truth, [[i, "1 10" if k % 2 else ""] for k, i in enumerate(ids)])
    write_rows(tmp_path / "perfect.csv", pd.read_csv(truth, dtype=str).fillna("").values.tolist())
    write_rows(tmp_path / "empty.csv", [[i, ""] for i in ids])
    assert main(["validate", str(tmp_path / "empty.csv"), "--sample", str(sample_path)]) == 0
    assert capsys.readouterr().out.startswith("OK:")
    assert score_file(tmp_path / "perfect.csv", truth) == (1.0, 6)
    assert score_file(tmp_path / "empty.csv", truth) == (0.5, 6)  # 3 of 6 truths empty
    assert main(["score", str(tmp_path / "empty.csv"), "--truth", str(truth)]) == 0
    assert capsys.readouterr().out.startswith("0.5000")
