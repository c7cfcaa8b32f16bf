#!/usr/bin/env bash
# The API contract run: Schemathesis against a real Sluice, every phase (examples, coverage,
# fuzzing, stateful) and every check, driven by the served /openapi.json. Exits non-zero on any
# failure or error; Schemathesis's summary line is the last line printed.
#
# Starts $SLUICE_BIN (else <repo>/target/debug/sluice) with a bearer token on free ports and a
# fresh data directory, and stops it by its PID at the end. Creates tests/contract/.venv if
# missing and installs requirements.txt. CONTRACT_EXAMPLES sets examples per operation and
# phase (default 100). CONTRACT_SEED fixes the generator's seed (default: one that passed, so
# CI is reproducible; `CONTRACT_SEED=random` explores new cases, as every change should be run
# with a few times). Extra arguments go to `st run`.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"
bin="${SLUICE_BIN:-$repo/target/debug/sluice}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv" || { echo "contract: cannot create $venv" >&2; exit 2; }
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
if ! "$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"; then
    echo "contract: pip install failed" >&2
    exit 2
fi

free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port="$(free_port)"
wire_port="$(free_port)"
data="$(mktemp -d)"
log="$data.log"
token="contract-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

# The server refuses SLUICE_* variables it does not know (scripts/test exports SLUICE_BIN):
# it gets none of the caller's.
unset_sluice=()
for v in $(env | grep -o '^SLUICE_[A-Z0-9_]*' || true); do unset_sluice+=(-u "$v"); done
env "${unset_sluice[@]}" SLUICE_AUTH_BEARER_TOKEN="$token" "$bin" serve --http-addr "127.0.0.1:$http_port" \
    --wire-addr "127.0.0.1:$wire_port" --data-dir "$data" >"$log" 2>&1 &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$data"
}
trap cleanup EXIT

seed=()
case "${CONTRACT_SEED:-243971523853924274618942833115108132435}" in
    random) ;;
    *) seed=(--seed "${CONTRACT_SEED:-243971523853924274618942833115108132435}") ;;
esac

cd "$here"
SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$here" "$venv/bin/st" --config-file "$here/schemathesis.toml" \
    run "http://127.0.0.1:$http_port/openapi.json" --wait-for-schema 30 \
    -H "Authorization: Bearer $token" --checks all \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "${CONTRACT_EXAMPLES:-100}" --workers 2 --request-timeout 10 "${seed[@]}" "$@"
status=$?
if ! kill -0 "$pid" 2>/dev/null; then
    echo "contract: the server exited during the run; its log:" >&2
    tail -50 "$log" >&2
    status=1
fi
if grep -q "panicked" "$log"; then
    echo "contract: the server panicked during the run:" >&2
    grep -A5 "panicked" "$log" >&2
    status=1
fi
rm -f "$log"
exit $status
