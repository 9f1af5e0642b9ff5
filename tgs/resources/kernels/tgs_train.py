"""Kaggle training kernel for tgs: runs `tgs run` on the competition data and writes the whole
run folder and submission.csv to /kaggle/working.

Attached inputs (under /kaggle/input, in any of Kaggle's mount layouts): the competition data,
a dataset staged by `tgs kaggle train` holding the `tgs` source, train-config.yaml,
tgs-stage.json (its stage id is this script's) and, for smp models,
segmentation_models_pytorch; for `--resume-from` an earlier training kernel's output. Override
the folders with TGS_KAGGLE_INPUT and TGS_KAGGLE_WORKING to run it anywhere laid out the same
way. A template: staging puts tgs/kaggle/kernel_boot.py's code in place of the marker below.
"""

# @KERNEL_BOOT@

if __name__ == "__main__":
    run_kernel("training")  # noqa: F821 (defined by the boot code staging puts above)
