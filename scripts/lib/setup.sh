# Shared set-up steps for scripts/test and scripts/serve: install only what is missing.

# Debian packages the build needs (also the container's build stage: scripts/container/install-build-packages).
BUILD_PACKAGES=(zlib1g-dev libopenblas-pthread-dev libdcmtk-dev libssl-dev libnghttp2-dev pkg-config)
# ... and those the tests add (dcmtk: dcmcjpeg writes the JPEG lossless series of Deploy/tests/test_dicom.py;
# orthanc and orthanc-dicomweb: the real PACS, with its DICOMweb plugin, of Deploy/tests/test_orthanc.py;
# openssl: the TLS tests make their certificates with `openssl req` and handshake with `openssl s_client`;
# nghttp2-client: test_http2's nghttp and h2load clients, and h2load, HTTP/2's wrk, in scripts/bench-http).
SYSTEM_PACKAGES=("${BUILD_PACKAGES[@]}" curl wrk nginx dcmtk orthanc orthanc-dicomweb openssl nghttp2-client)

ensure_system_packages() { ensure_packages "${SYSTEM_PACKAGES[@]}"; }

# Installs those of the named Debian packages that are missing (none: no apt-get at all).
ensure_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        echo "== Installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
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
