#!/usr/bin/env bash
# Runs the Prometheus differential suite (tests/prometheus): Sluice vs a real Prometheus.
#
# Needs `prometheus` on PATH (or $PROMETHEUS_BIN) and $SLUICE_BIN (the sluice binary), or
# PROM_DIFF_TARGET=prometheus to check the harness against a second Prometheus instead.
# Creates tests/prometheus/.venv if missing, installs requirements.txt, runs pytest -q (extra
# arguments are passed on) and exits with pytest's code; pytest's summary line is the last line.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv" || { echo "run_tests.sh: cannot create $venv" >&2; exit 2; }
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
if ! "$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"; then
    echo "run_tests.sh: pip install failed" >&2
    exit 2
fi

cd "$here"
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the source tree
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
