"""Pseudo-labelling (what the 1st-place TGS team used): the run's confident test predictions
become an extra training set for a second round (`pseudo: DIR` in its config).

Confidence rule, per test image, on the run's ensemble (folds x snapshots x TTA):
- the post-processed mask (threshold, min-area, gate, blank rule: exactly the submission's,
  recorded in pseudo.json) is the label;
- the image is kept when at most `max_uncertain` of its pixels have a probability inside
  (`low`, `high`): the ensemble is sure of almost every pixel;
- an empty label also needs the classifier head (when the run has one) to say salt-absent with
  probability < `low`, and a non-empty label with > `high`.
Both empty and non-empty images are kept. The rule and the counts are written to pseudo.json.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tgs.core.errors import TGSError
from tgs.core.fileio import atomic_dir
from tgs.data import rle
from tgs.data.layout import write_image, write_mask
from tgs.post.rule import PostProcessing
from tgs.predict.test_set import predict_batches, run_tta
from tgs.run.folder import Run
from tgs.run.lock import locks
from tgs.run.records import PseudoLabels


@dataclass(frozen=True)
class Confidence:
    """The rule deciding which test predictions become pseudo-labels."""

    # chosen on OOF (runs of the scratch CPU recipe, now cpu_scratch.yaml, real data): keeps ~40%
    # of images, ~35% of them salt, whose labels score ~0.91 against the truth (all OOF images:
    # ~0.71)
    low: float = 0.2
    high: float = 0.8
    max_uncertain: float = 0.03  # share of pixels allowed between low and high

    def select(self, probs: np.ndarray, masks: np.ndarray, cls: np.ndarray | None) -> np.ndarray:
        """probs (N, H, W) probabilities, masks (N, H, W) labels, cls (N,) or None -> keep (N,)."""
        unsure = ((probs > self.low) & (probs < self.high)).reshape(len(probs), -1).mean(axis=1)
        keep = unsure <= self.max_uncertain
        if cls is not None:
            empty = masks.reshape(len(masks), -1).max(axis=1) == 0
            keep &= np.where(empty, cls < self.low, cls > self.high)
        return keep


@locks("run", existing=True)
def make_pseudo(
    run: Run,
    data_dir: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    rule: Confidence | None = None,
    *,
    batch_size: int = 256,
    force: bool = False,
) -> PseudoLabels:
    """Write the confident test predictions of `run` as a labelled set in the competition
    layout (train.csv, train/images, train/masks, depths.csv, pseudo.json); returns pseudo.json's
    record. Default folder: RUN/pseudo."""
    rule = rule or Confidence()
    data_dir = run.data_dir(data_dir)
    out = Path(out) if out else run.paths.pseudo
    tta, _ = run_tta(run, None)
    rows, n_seen, stats = [], 0, {}
    with atomic_dir(out, overwrite=force) as tmp:
        for sub in ("train/images", "train/masks"):
            (tmp / sub).mkdir(parents=True)
        for b in predict_batches(run, data_dir, batch_size, tta, stats):
            n_seen += len(b.ids)
            keep = rule.select(b.probs, b.masks, b.cls)
            for i in np.flatnonzero(keep):
                id_ = b.ids[i]
                write_image(tmp / "train" / "images" / f"{id_}.png", b.images[i])
                write_mask(tmp / "train" / "masks" / f"{id_}.png", b.masks[i])
                rows.append((id_, b.masks[i]))
        if not rows:
            raise TGSError(f"no test prediction of {run.root} passes {rule}: loosen the rule")
        ids, masks = [r[0] for r in rows], np.stack([r[1] for r in rows])
        pd.DataFrame({"id": ids, "rle_mask": rle.encode_batch(masks)}).to_csv(
            tmp / "train.csv", index=False
        )
        depths = data_dir / "depths.csv"
        if depths.is_file():
            z = pd.read_csv(depths, dtype={"id": str})
            z[z["id"].isin(set(ids))].to_csv(tmp / "depths.csv", index=False)
        summary = PseudoLabels(
            run=str(run.root),
            data=str(data_dir),
            rule=asdict(rule),
            post_processing=PostProcessing.from_thresholds(run.thresholds()).describe(),
            tta=tta,
            models=run.prediction_models(),
            n_test=n_seen,
            n_kept=len(rows),
            n_kept_empty=int((masks.reshape(len(masks), -1).max(axis=1) == 0).sum()),
            n_kept_salt=int((masks.reshape(len(masks), -1).max(axis=1) > 0).sum()),
        )
        summary.write(tmp / PseudoLabels.FILE)
    return summary
