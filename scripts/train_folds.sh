#!/usr/bin/env bash
# Data folder + config -> folds -> every fold trained -> threshold search -> submission -> report.
#
#   scripts/train_folds.sh [--config CFG] [--data DIR] [--folds 0,1,2,3,4] [--run RUN]
#                          [--folds-csv CSV] [--resume] [--gpus 0,1,2,3] [--nproc N]
#                          [--nnodes N --node-rank R --rdzv-endpoint HOST:PORT ...] [KEY=VALUE ...]
#
# A thin wrapper over `python -m tgs run` (the same as the `tgs run` command once installed:
# same options, `tgs run --help`) that runs the tgs of this checkout.
# With no --data: uses data/ if it holds the competition files (unpacking
# data/tgs-salt-identification-challenge.zip first if that is all there is); otherwise
# generates synthetic data in data/synth and runs the shipped demo config.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" -m tgs run "$@"
