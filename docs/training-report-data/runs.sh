# Sourced by the scripts of docs/training-report-data: the training runs behind v3 and its ablations (the
# committed Training/resume folder until issue 13 closed, at d5125e1), extracted from git history into the
# ignored data/w/runs-v3 the first time a script needs them. Sets RUNS (vqvae-local/, latent-local/).
RUNS=data/w/runs-v3
if [[ ! -d $RUNS/latent-local ]]; then
    mkdir -p "$RUNS"
    git archive d5125e1 Training/resume | tar -x -C "$RUNS" --strip-components 2
fi
