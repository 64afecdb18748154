# Runs libFuzzer targets side by side for scripts/fuzz-parser and scripts/fuzz-decoders, as many at once as
# there are cores. A target is one process, so each still has a core of its own for its whole time: the same
# fuzzing as one after another, in a fraction of the wall time (CI has 2 cores).
#
#   fuzz_start "nifti: 60 s" command...   # waits while every core has a target, then starts this one
#   fuzz_finish                           # waits for all; their output in start order; fails naming those that failed

fuzz_output=""
fuzz_titles=()

fuzz_start() {
    local title=$1
    shift
    [[ -n "$fuzz_output" ]] || fuzz_output=$(mktemp -d)
    while (($(jobs -rp | wc -l) >= $(nproc))); do wait -n || true; done
    local index=${#fuzz_titles[@]}
    fuzz_titles+=("$title")
    # Background commands read /dev/null; libFuzzer's exit status is kept as a file.
    ( if "$@" > "$fuzz_output/$index.log" 2>&1; then touch "$fuzz_output/$index.passed"; fi ) &
}

fuzz_finish() {
    wait
    local failed=() index
    for index in "${!fuzz_titles[@]}"; do
        echo "== ${fuzz_titles[$index]}"
        cat "$fuzz_output/$index.log"
        [[ -e "$fuzz_output/$index.passed" ]] || failed+=("${fuzz_titles[$index]%%:*}")
    done
    rm -rf "$fuzz_output"
    fuzz_output="" fuzz_titles=()
    if ((${#failed[@]})); then
        echo "fuzzing failed: ${failed[*]} (the failing inputs are in Fuzz/)" >&2
        return 1
    fi
}
