#!/usr/bin/env bash
# Per-family ablation of the ATD's proxy mix (issue 13): from the paper-task ATD, 500 steps of the mix with
# all seven families, and with each one off; glioma-token AP/AUROC on validation at steps 250 and 500.
set -euo pipefail
cd "$(dirname "$0")/../../.."
source docs/training-report-data/runs.sh
PY=.venv/bin/python W=data/w V=$RUNS/vqvae-local T=$W/tokens/train_local.npz R=$RUNS/latent-local
[[ -f $W/sets/glioma_val_local.npz ]] || $PY -m mimood_train.diagnosis token-set --vqvae $V --data $W/cache/val_anomalous.npz --out $W/sets/glioma_val_local.npz
[[ -f $W/image_proxies_local.npz ]] || $PY -m mimood_train.proxies --vqvae $V --data $W/cache/train.npz --tokens $T --out $W/image_proxies_local.npz --count 6000
families=(random cross_subject moved mvtm blob patch deform)
for off in none "${families[@]}"; do
    out=$W/ablation/atd-without-$off
    [[ -f $out/model.pt ]] && continue
    weights=$(for f in "${families[@]}"; do [[ $f == "$off" ]] || printf '%s=1,' "$f"; done)
    $PY -m mimood_train.train atd --config small-local --data $W/cache/train.npz --vqvae $V --tokens $T --token-views 1 \
        --threads 2 --steps 500 --init $R/atd-paper --mvtm $R/mvtm --image-proxies $W/image_proxies_local.npz \
        --proxies "${weights%,}" --validation $W/sets/glioma_val_local.npz --validate-every 250 --lr 2e-4 --warmup-steps 50 \
        --out "$out" --resume
done
echo ABLATION DONE
