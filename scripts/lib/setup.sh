# Shared set-up steps for scripts/test and scripts/serve: install only what is missing.

# Debian packages the build and the tests need.
SYSTEM_PACKAGES=(zlib1g-dev libopenblas-pthread-dev pkg-config curl wrk nginx)

ensure_system_packages() {
    local missing=()
    for pkg in "${SYSTEM_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        echo "== Installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
}

# The project's Python environment in .venv, created once and refreshed when Training/pyproject.toml changes.
ensure_python_env() {
    local stamp=.venv/.pyproject.sha256
    local want
    want=$(sha256sum Training/pyproject.toml | cut -d' ' -f1)
    if [[ -x .venv/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
        return
    fi
    echo "== Setting up the Python environment in .venv (PyTorch is large: a few minutes the first time)"
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e 'Training[dev]'
    echo "$want" > "$stamp"
}
