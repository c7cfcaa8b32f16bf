#!/usr/bin/env bash
# Installs (npm ci), builds (tsc) and tests (node --test) the TypeScript client against real
# `sluice serve` processes started by the tests: $SLUICE_BIN, default <repo>/target/debug/sluice.
# The last lines are node's test summary; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")"
REPO="$(cd ../.. && pwd)"
export SLUICE_BIN="${SLUICE_BIN:-$REPO/target/debug/sluice}"
if [ ! -x "$SLUICE_BIN" ]; then
  echo "run_tests.sh: SLUICE_BIN=$SLUICE_BIN is not an executable file" >&2
  exit 2
fi
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi
rm -rf dist
npx tsc -p tsconfig.json
# Test files run one at a time (each starts its own servers); spec reporter, summary last.
# (--test-concurrency exists from Node 20.10; older Nodes run files one at a time anyway.)
if node --help 2>/dev/null | grep -q -- '--test-concurrency'; then
  node --test --test-concurrency=1 --test-reporter=spec test/
else
  node --test --test-reporter=spec test/
fi
