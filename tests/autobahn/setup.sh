#!/usr/bin/env bash
# Install the Autobahn WebSocket testsuite from PyPI into a venv and port it
# to Python 3 (see README.md). Idempotent: a second run with the same
# requirements.txt and port_py3.py does nothing.
#
#   tests/autobahn/setup.sh [VENV]     default VENV: <repo>/target/autobahn-venv
#
# Environment: PYTHON (interpreter to create the venv with; default python3.11
# if present, else python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${1:-$repo/target/autobahn-venv}"
py="${PYTHON:-$(command -v python3.11 || command -v python3)}"

stamp_want="$(cat "$here/requirements.txt" "$here/port_py3.py" | sha256sum | cut -d' ' -f1)"
stamp="$venv/.ringwire-autobahn-stamp"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$stamp_want" && -x "$venv/bin/wstest" ]]; then
    echo "autobahn setup: $venv is up to date"
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
    echo "autobahn setup: creating venv $venv with $py"
    mkdir -p "$(dirname "$venv")"
    "$py" -m venv "$venv"
fi
vpy="$venv/bin/python"
rm -f "$stamp"

"$vpy" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
# The two packages the port edits: reinstall from pristine files every time
# the port runs (a removed suite dir also drops the port's marker).
site="$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$vpy" -m pip uninstall --quiet --disable-pip-version-check -y autobahntestsuite autobahn
rm -rf "$site/autobahntestsuite" "$site/autobahn"
"$vpy" -m pip install --quiet --disable-pip-version-check --no-deps \
    "$(grep -E '^autobahntestsuite==' "$here/requirements.txt")" \
    "$(grep -E '^autobahn==' "$here/requirements.txt")"

# lib2to3 left the standard library in Python 3.13; fissix is its PyPI fork.
if ! "$vpy" -c 'import lib2to3' 2>/dev/null; then
    "$vpy" -m pip install --quiet --disable-pip-version-check 'fissix==24.4.24'
fi

"$vpy" "$here/port_py3.py" "$site"

# smoke test: the CLI loads and the case set imports
"$venv/bin/wstest" --help > /dev/null
"$vpy" -c 'from autobahntestsuite.case import Cases; assert len(Cases) > 500, len(Cases)'

echo "$stamp_want" > "$stamp"
echo "autobahn setup: ready: $venv/bin/wstest"
