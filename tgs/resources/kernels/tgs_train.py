"""Kaggle training kernel for tgs: runs `tgs run` on the competition data and writes the whole
run folder and submission.csv to /kaggle/working.

Attached inputs (under /kaggle/input): the competition data, a dataset staged by
`tgs kaggle train` holding the `tgs` source and train-config.yaml (and, for smp models,
segmentation_models_pytorch), and for `--resume-from` an earlier training kernel's output.
Override the folders with TGS_KAGGLE_INPUT and TGS_KAGGLE_WORKING to run it anywhere laid out
the same way.
"""

import json
import os
import sys
from pathlib import Path

INPUT = Path(os.environ.get("TGS_KAGGLE_INPUT", "/kaggle/input"))
WORKING = Path(os.environ.get("TGS_KAGGLE_WORKING", "/kaggle/working"))


def find_staged_dataset(root: Path, depth: int = 3) -> Path:
    """The attached dataset that holds tgs/__init__.py and train-config.yaml."""
    for d in range(depth + 1):
        for init in sorted(root.glob("*/" * d + "tgs/__init__.py")):
            if (init.parent.parent / "train-config.yaml").is_file():
                return init.parent.parent
    raise SystemExit(f"no attached dataset with tgs/ and train-config.yaml under {root}")


if __name__ == "__main__":
    staged = find_staged_dataset(INPUT)
    sys.path.insert(0, str(staged))  # "install" tgs (and smp) from the attached dataset
    from tgs.kaggle.training_kernel import run_training

    status = run_training(staged, INPUT, WORKING)
    print(json.dumps(status.to_dict(), indent=2))
