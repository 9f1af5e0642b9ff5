"""What Kaggle allows a kernel (checked against kaggle 2.2.5 and Kaggle's docs, 2026-12): the
GPU a training kernel asks for, a session's length and what it keeps; the oldest kaggle client
tgs works with. Light: the CLI reads it."""

DEFAULT_ACCELERATOR = "NvidiaTeslaT4"  # "GPU T4 x2"; kaggle 2.x: P100 retired (no sm_60 kernels)
SESSION_MINUTES = 12 * 60  # a CPU or GPU session runs at most 12 hours
MARGIN_MINUTES = 20  # tgs's reserve beside the budget: imports, unpacking the data, saving
STOP_MINUTES = 5  # the kernel stops `tgs run` this long before the limit, so the output saves
# Counted before the script's start when /proc cannot tell the session's start: an allowance
# for Kaggle's set-up, not a measured time (tgs-train.json records the measured one on Kaggle).
SETUP_MINUTES = 5
OUTPUT_LIMIT_GB = 20  # Kaggle keeps up to 20 GB of /kaggle/working
KERNEL_WAIT_HOURS = 13  # kernel-status --wait: a 12-hour session plus time in Kaggle's queue
# kaggle 2.2.2 fetches every page of `kernels output` (20 files a page; older clients fetch the
# first page only, Kaggle/kaggle-cli#1045); `datasets status --format json` came in 2.1.1
MIN_CLIENT = "2.2.2"
PHONE_NOTE = (
    "Kaggle gives a kernel a GPU or the internet only on a phone-verified account "
    "(https://www.kaggle.com/settings)"
)
