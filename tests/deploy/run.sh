#!/usr/bin/env bash
# The deployment checks (tests/deploy/validate.py): Grafana dashboards and provisioning, alert
# rules (promtool), the compose file, the Dockerfile, the Helm chart (helm, or the helmrender
# stand-in built from Debian's golang-github-masterminds-sprig-dev), and a live run: a primary
# and a replica from target/debug/sluice (or $SLUICE_BIN) with self-monitoring every second
# take ~10 s of mixed load; every dashboard expression must then have data in their database
# `_monitoring`, and every alert rule without its threshold too (exceptions are printed with
# their reason); a real Prometheus (Debian's `prometheus`) scrapes them meanwhile and
# remote-writes into Sluice, and every expression is evaluated there as well.
# Prints `deploy: N passed, M failed`; exits non-zero on a failure. Under CI (CI set) a skipped
# check counts as a failure. Extra arguments go to validate.py (--help). About 20 s.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  echo "$want" > "$stamp"
fi

export SLUICE_BIN="${SLUICE_BIN:-$root/target/debug/sluice}"
args=()
if [ -n "${CI:-}" ]; then
  args+=(--strict)
fi
# The checks take well under a minute; the limit only guards against a hung server.
exec timeout --signal=TERM --kill-after=20 170 "$venv/bin/python" "$here/validate.py" "${args[@]}" "$@"
