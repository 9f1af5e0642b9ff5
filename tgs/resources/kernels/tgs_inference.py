"""Kaggle inference kernel for tgs: runs offline (internet off) and writes submission.csv.

Attached inputs (under /kaggle/input): the competition data, and a dataset staged by
`python -m tgs kaggle push-kernel RUN` holding the `tgs` source, the run's checkpoints,
thresholds and config (folder `run/`) and, for smp runs, segmentation_models_pytorch (Kaggle's
image lacks it). Writes /kaggle/working/submission.csv and tgs-kernel.log. Override the folders
with TGS_KAGGLE_INPUT and TGS_KAGGLE_WORKING to run it anywhere laid out the same way.
"""

import os
import sys
from pathlib import Path

INPUT = Path(os.environ.get("TGS_KAGGLE_INPUT", "/kaggle/input"))
WORKING = Path(os.environ.get("TGS_KAGGLE_WORKING", "/kaggle/working"))


def find_staged_dataset(root: Path, depth: int = 3) -> Path:
    """The attached dataset that holds tgs/__init__.py and run/config.yaml."""
    for d in range(depth + 1):
        for init in sorted(root.glob("*/" * d + "tgs/__init__.py")):
            if (init.parent.parent / "run" / "config.yaml").is_file():
                return init.parent.parent
    raise SystemExit(f"no attached dataset with tgs/ and run/ under {root}")


if __name__ == "__main__":
    staged = find_staged_dataset(INPUT)
    sys.path.insert(0, str(staged))  # "install" tgs (and smp) from the attached dataset, offline
    from tgs.kaggle.inference_kernel import run_inference

    path = run_inference(staged / "run", INPUT, WORKING)
    print(f"wrote {path}")
    print((path.parent / "tgs-kernel.log").read_text())
