#!/usr/bin/env bash
# Runs the Python client's test suite against a real server.
#
# Creates clients/python/.venv if missing, installs the package with its test extras, runs
# pytest -q and prints pytest's summary line; exits with pytest's code. The server binary is
# $SLUICE_BIN, else <repo>/target/release/sluice, else <repo>/target/debug/sluice.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv" || { echo "run_tests.sh: cannot create $venv" >&2; exit 2; }
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
if ! "$venv/bin/python" -m pip install --quiet -e "$here[test]"; then
    echo "run_tests.sh: pip install failed" >&2
    exit 2
fi

cd "$here"
# pytest -q ends with its own summary line ("N passed ..."): nothing is printed after it.
exec "$venv/bin/python" -m pytest -q "$@"
