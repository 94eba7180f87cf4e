#!/usr/bin/env bash
# Installs what a fresh machine lacks: rustfmt and clippy, headless Chromium (the browser
# tests), nats-server (the cluster tests), and the Python protobuf
# package (4.21 or later) that the codec's cross-check test (codec/tests/cross_check.rs)
# runs. With CI set (.ci/run sets it) that test fails when the package is missing, so
# this step fails loudly when it cannot install it, rather than warn and go on.
#
# Where python3 is the system's on Debian or Ubuntu (or missing), the distribution's
# python3-protobuf is installed with apt-get (root or passwordless sudo): pip refuses to
# install into an "externally managed" system Python there (PEP 668, Debian 12 and
# later). Otherwise (a venv, pyenv, another distribution) pip installs it, falling back
# to --user and then --user --break-system-packages.
set -euo pipefail
if command -v rustup >/dev/null 2>&1; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || rustup component add rustfmt clippy
fi
cargo --version
rustc --version

have_protobuf() {
    python3 -c 'import google.protobuf' >/dev/null 2>&1
}
as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        echo "setup: not root and no passwordless sudo for: $*" >&2
        return 1
    fi
}
pip_install() {
    local spec='protobuf>=4.21'
    python3 -m pip install --quiet "$spec" ||
        python3 -m pip install --quiet --user "$spec" ||
        python3 -m pip install --quiet --user --break-system-packages "$spec"
}

if ! have_protobuf; then
    py=$(command -v python3 || true)
    if command -v apt-get >/dev/null 2>&1 && { [ -z "$py" ] || [ "$(readlink -f "$py")" = "$(readlink -f /usr/bin/python3)" ]; }; then
        echo "setup: installing python3-protobuf with apt-get"
        as_root apt-get update -qq || true
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-protobuf ||
            echo "setup: apt-get could not install python3-protobuf; trying pip" >&2
    fi
    if ! have_protobuf && command -v python3 >/dev/null 2>&1; then
        echo "setup: installing protobuf with pip for $(command -v python3)"
        pip_install || echo "setup: pip could not install protobuf" >&2
    fi
fi
if ! have_protobuf; then
    echo "error: python3 cannot import google.protobuf, which the codec's protobuf" \
        "cross-check (codec/tests/cross_check.rs) needs; install python3-protobuf" \
        "(apt-get) or 'pip install protobuf' for $(command -v python3 || echo 'python3 (missing)')" >&2
    exit 1
fi
echo "python3 protobuf $(python3 -c 'import google.protobuf as p; print(p.__version__)') ($(command -v python3))"

# Headless Chromium for the browser tests (tests/tests/browser_*.rs) and nats-server for
# the cluster tests (tests/tests/cluster_nats.rs): the Debian packages. Under CI a test
# that finds either missing fails, so a failed install shows there.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
if [ ${#missing[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing ${missing[*]} with apt-get"
        as_root apt-get update -qq || true
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
            echo "setup: apt-get could not install ${missing[*]}" >&2
    else
        echo "setup: no apt-get; install ${missing[*]} for the browser and cluster tests" >&2
    fi
fi
if command -v chromium >/dev/null 2>&1; then
    echo "$(chromium --version 2>/dev/null || echo chromium) ($(command -v chromium))"
fi
for n in /usr/sbin/nats-server "$(command -v nats-server || true)"; do
    if [ -n "$n" ] && [ -x "$n" ]; then
        echo "nats-server $("$n" --version 2>/dev/null | head -1) ($n)"
        break
    fi
done
