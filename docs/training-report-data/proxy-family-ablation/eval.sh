#!/usr/bin/env bash
# Token AP/AUROC (mimood eval, Table 1) on the 120 glioma validation slices of each ablation ATD, and of the
# paper-task ATD they start from; the other networks are v3's.
set -euo pipefail
cd "$(dirname "$0")/../../.."
source docs/training-report-data/runs.sh
PY=.venv/bin/python W=data/w R=$RUNS/latent-local
while ! grep -q "ABLATION DONE" $W/ablation/run.log; do sleep 30; done
for atd in $R/atd-paper $W/ablation/atd-without-*; do
    name=$(basename "$atd")
    out=$W/ablation/eval/$name
    [[ -f $out/table1.csv ]] && continue
    $PY -m mimood_train.checkpoint export --out $W/ablation/ckpt --name "ablation-$name" \
        --component vqvae=$RUNS/vqvae-local --component atd="$atd" --component mvtm=$R/mvtm \
        --component ar=$R/ar --component critic=$R/critic --component prior=$W/runs/prior-local.pt \
        --inference '{"lambda": 0.003, "critic_threshold": 0.1, "lambda_nll": 6}' > /dev/null
    env -u OPENBLAS_CORETYPE .build/release/mimood eval --model $W/ablation/ckpt --threads 2 --data $W/synthetic/val_anomalous \
        --slices-per-volume 4 --methods vqvae --timing-batch 0 --figures 0 --out "$out" > "$out.log" 2>&1 || { echo "FAILED $name"; continue; }
done
echo EVAL DONE
