"""What Kaggle allows a kernel (checked against kaggle 2.2.5 and Kaggle's docs, 2026-12): the
GPU a training kernel asks for, a session's length and what it keeps. Light: the CLI reads it."""

DEFAULT_ACCELERATOR = "NvidiaTeslaT4"  # "GPU T4 x2"; kaggle 2.x: P100 retired (no sm_60 kernels)
SESSION_MINUTES = 12 * 60  # a CPU or GPU session runs at most 12 hours
MARGIN_MINUTES = 20  # tgs's reserve beside the budget: imports, unpacking the data, saving
STOP_MINUTES = 5  # the kernel stops `tgs run` this long before the limit, so the output saves
OUTPUT_LIMIT_GB = 20  # Kaggle keeps up to 20 GB of /kaggle/working
