"""Kaggle inference kernel for tgs: runs offline (internet off) and writes submission.csv.

Attached inputs (under /kaggle/input, in any of Kaggle's mount layouts): the competition data,
and a dataset staged by `python -m tgs kaggle push-kernel RUN` holding the `tgs` source, the
run's checkpoints, thresholds and config (folder `run/`), tgs-stage.json (its stage id is this
script's) and, for smp runs, segmentation_models_pytorch (Kaggle's image lacks it). Writes
/kaggle/working/submission.csv and tgs-kernel.log. Override the folders with TGS_KAGGLE_INPUT
and TGS_KAGGLE_WORKING to run it anywhere laid out the same way. A template: staging puts
tgs/kaggle/kernel_boot.py's code in place of the marker below.
"""

# @KERNEL_BOOT@

if __name__ == "__main__":
    run_kernel("inference")  # noqa: F821 (defined by the boot code staging puts above)
