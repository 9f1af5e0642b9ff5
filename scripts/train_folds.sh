#!/usr/bin/env bash
# Data folder + config -> folds -> every fold trained -> threshold search -> submission.
#
#   scripts/train_folds.sh [--config CFG] [--data DIR] [--folds 0,1,2,3,4] [--run RUN]
#                          [--folds-csv CSV] [--resume] [--gpus 0,1,2,3] [--nproc N]
#                          [KEY=VALUE ...]
#
# With no --data: uses data/ if it holds the competition files (unpacking
# data/tgs-salt-identification-challenge.zip first if that is all there is); otherwise
# generates synthetic data in data/synth and runs configs/demo.yaml.
# KEY=VALUE pairs override config keys for every fold (e.g. epochs=5). --gpus trains folds in
# parallel, one per listed GPU; --nproc N trains each fold on N processes with torchrun (DDP).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}
CONFIG="" DATA="" FOLD_LIST="" RUN="" FOLDS_CSV="" RESUME=0 GPUS="" NPROC=1
OVERRIDES=()

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config) CONFIG=$2; shift 2 ;;
    --data) DATA=$2; shift 2 ;;
    --folds) FOLD_LIST=$2; shift 2 ;;
    --run) RUN=$2; shift 2 ;;
    --folds-csv) FOLDS_CSV=$2; shift 2 ;;
    --resume) RESUME=1; shift ;;
    --gpus) GPUS=$2; shift 2 ;;
    --nproc) NPROC=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *=*) OVERRIDES+=("$1"); shift ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

has_data() { [[ -f "$1/train.csv" && -d "$1/train/images" && -f "$1/sample_submission.csv" ]]; }
if [[ -z "$DATA" ]]; then
  if [[ ! -f data/train.csv && -f data/tgs-salt-identification-challenge.zip ]]; then
    $PY -m tgs prepare data/tgs-salt-identification-challenge.zip --out data/competition
  fi
  if has_data data; then DATA=data
  elif has_data data/competition; then DATA=data/competition
  else
    DATA=data/synth
    if ! has_data "$DATA"; then
      $PY -m tgs synth --out "$DATA" --n-train 600 --n-test 200 --seed 0
    fi
    CONFIG=${CONFIG:-configs/demo.yaml}
  fi
fi
if [[ -z "$CONFIG" ]]; then
  if $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    CONFIG=configs/resnet34.yaml
  else
    CONFIG=configs/cpu.yaml
  fi
fi

cfg_get() { $PY -m tgs config --config "$CONFIG" --get "$1" ${OVERRIDES[@]+"${OVERRIDES[@]}"}; }
NAME=$(cfg_get name)
N_FOLDS=$(cfg_get n_folds)
FOLD_SEED=$(cfg_get fold_seed)
RUN=${RUN:-runs/$NAME}
FOLDS_CSV=${FOLDS_CSV:-folds/$(basename "$DATA")-${N_FOLDS}f-s${FOLD_SEED}.csv}
if [[ -z "$FOLD_LIST" ]]; then
  FOLD_LIST=$(cfg_get folds)
  [[ "$FOLD_LIST" == "None" ]] && FOLD_LIST=$(seq -s, 0 $((N_FOLDS - 1)))
fi

echo "== config $CONFIG | data $DATA | run $RUN | folds $FOLD_LIST of $FOLDS_CSV"
if [[ $RESUME == 0 ]] && compgen -G "$RUN/fold*/last.pt" > /dev/null; then
  echo "error: $RUN already holds trained folds: pass --resume to continue it, or --run NEW" >&2
  exit 1
fi
START=$(date +%s)
if [[ ! -f "$FOLDS_CSV" ]]; then
  $PY -m tgs folds --data "$DATA" --out "$FOLDS_CSV" --n-folds "$N_FOLDS" --seed "$FOLD_SEED"
fi
train_fold() {  # train_fold K: one fold, on NPROC processes when NPROC > 1
  local k=$1 extra=() launcher=("$PY" -m)
  [[ $RESUME == 1 ]] && extra+=(--resume)
  if [[ $NPROC -gt 1 ]]; then
    launcher=("$PY" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m)
  fi
  "${launcher[@]}" tgs train --config "$CONFIG" --data "$DATA" --folds "$FOLDS_CSV" --fold "$k" \
    --run-dir "$RUN" ${extra[@]+"${extra[@]}"} ${OVERRIDES[@]+"${OVERRIDES[@]}"}
}
IFS=, read -r -a FOLD_ARRAY <<< "$FOLD_LIST"
IFS=, read -r -a GPU_ARRAY <<< "$GPUS"
TODO=()
for k in "${FOLD_ARRAY[@]}"; do
  if [[ $RESUME == 1 && -f "$RUN/fold$k/summary.json" ]]; then
    echo "== fold $k already finished ($RUN/fold$k/summary.json): skipped"
  else
    TODO+=("$k")
  fi
done
if [[ ${#GPU_ARRAY[@]} -gt 1 ]]; then  # folds in parallel, one per GPU, in waves
  for ((i = 0; i < ${#TODO[@]}; i += ${#GPU_ARRAY[@]})); do
    pids=()
    for ((j = 0; j < ${#GPU_ARRAY[@]} && i + j < ${#TODO[@]}; j++)); do
      k=${TODO[i + j]}
      mkdir -p "$RUN"
      echo "== fold $k on GPU ${GPU_ARRAY[j]} (log $RUN/fold$k.log)"
      CUDA_VISIBLE_DEVICES=${GPU_ARRAY[j]} train_fold "$k" > "$RUN/fold$k.log" 2>&1 &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || { echo "error: a fold failed (see $RUN/fold*.log)" >&2; exit 1; }; done
  done
else
  [[ -n "$GPUS" ]] && export CUDA_VISIBLE_DEVICES=$GPUS
  for k in ${TODO[@]+"${TODO[@]}"}; do
    echo "== fold $k"
    train_fold "$k"
  done
fi
$PY -m tgs threshold --run "$RUN" --data "$DATA"
SUB_LOG=$($PY -m tgs predict --run "$RUN" --data "$DATA" | tee /dev/stderr)
SUB=$(sed -n 's/^wrote \(.*\.csv\) (manifest.*/\1/p' <<< "$SUB_LOG")
CV=$($PY -c "import json,sys; print(f\"{json.load(open(sys.argv[1]))['cv']:.4f}\")" "$RUN/thresholds.json")
echo "== CV $CV | submission $SUB | $(( $(date +%s) - START ))s"
if [[ -f "$DATA/truth.csv" ]]; then
  echo "== score against $DATA/truth.csv: $($PY -m tgs score "$SUB" --truth "$DATA/truth.csv")"
fi
