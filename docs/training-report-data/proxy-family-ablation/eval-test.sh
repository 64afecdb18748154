#!/usr/bin/env bash
# The ablation ATDs of run.sh (and seed1.sh's second all-families run, and the proxy-mix ATD of the shipped
# model's ablation row) on the synthetic TEST set: token AP/AUROC of mimood eval's Table 1 over the same 240
# slices as docs/results.md. Threshold-free, so no λ is chosen; nothing here chooses anything. The other
# networks are v3's.
set -euo pipefail
cd "$(dirname "$0")/../../.."
source docs/training-report-data/runs.sh
PY=.venv/bin/python W=data/w R=$RUNS/latent-local
for atd in $R/atd-paper $R/atd-mix2 $W/ablation/atd-without-* $W/ablation/seed1-atd-without-none; do
    name=$(basename "$atd")
    out=$W/ablation/eval-test/$name
    [[ -f $out/table1.csv ]] && continue
    mkdir -p "$out"
    $PY -m mimood_train.checkpoint export --out $W/ablation/ckpt-test --name "ablation-$name" \
        --component vqvae=$RUNS/vqvae-local --component atd="$atd" --component mvtm=$R/mvtm \
        --component ar=$R/ar --component critic=$R/critic --component prior=$W/runs/prior-local.pt \
        --inference '{"lambda": 0.003, "critic_threshold": 0.1, "lambda_nll": 6}' > /dev/null
    .build/release/mimood eval --model $W/ablation/ckpt-test --threads "${THREADS:-2}" --data $W/synthetic-test/test_anomalous \
        --slices-per-volume 4 --methods vqvae --timing-batch 0 --figures 0 --out "$out" > "$out.log" 2>&1
done
echo "variant,test_token_ap,test_token_auroc"
for table in $W/ablation/eval-test/*/table1.csv; do
    printf '%s,%s\n' "$(basename "$(dirname "$table")")" "$(awk -F, '$1 == "atd" && $3 == "all" {printf "%.4f,%.4f", $4, $5}' "$table")"
done
