#!/usr/bin/env bash
# The paper-task ATD trained further (issue 13: its glioma-token AP was still rising at 1500 steps): from the
# shipped `atd-paper`, a new schedule of 6000 steps of the paper's task (random codes), lr 2e-4 after 100
# warm-up steps, the validation curve every 500 steps (log.jsonl beside this script). It ran to the end over
# stops 25-27; its state at step 5250 is in git history (runs.sh extracts it into data/w/runs-v3), so this
# command finishes it again from there. STOP_AT=N pauses it at step N.
set -euo pipefail
cd "$(dirname "$0")/../../.."
source docs/training-report-data/runs.sh
PY=.venv/bin/python W=data/w V=$RUNS/vqvae-local R=$RUNS/latent-local
$PY -m mimood_train.train atd --config small-local --data $W/cache/train.npz --vqvae $V --tokens $W/tokens/train_local.npz \
    --token-views 1 --threads "${THREADS:-1}" --steps 6000 --init $R/atd-paper --proxies random=1 \
    --validation $W/sets/glioma_val_local.npz --validate-every 500 --lr 2e-4 --warmup-steps 100 \
    --out $R/atd-paper-long --resume ${STOP_AT:+--stop-at "$STOP_AT"}
