"""What Kaggle allows a kernel (checked against kaggle 2.2.5 and Kaggle's docs, 2026-12): the
GPU a training kernel asks for, a session's length and what it keeps. Light: the CLI reads it."""

DEFAULT_ACCELERATOR = "NvidiaTeslaT4"  # kaggle 2.x: P100 is retired (sm_60 has no kernels)
SESSION_MINUTES = 12 * 60  # a CPU or GPU session runs at most 12 hours
MARGIN_MINUTES = 20  # tgs's: imports, the data, predict and the report after the last fold
OUTPUT_LIMIT_GB = 20  # Kaggle keeps up to 20 GB of /kaggle/working
