#!/usr/bin/env bash
# Headless-browser tests of the web console and /docs: Debian's chromium (installed with apt-get
# if missing, as root), puppeteer-core from npm (`npm ci`; it downloads no browser), and
# `node --test` against `sluice serve` processes the tests start themselves on free loopback
# ports: $SLUICE_BIN, default <repo>/target/debug/sluice. Builds nothing.
#
#   bash tests/browser/run.sh                        # screenshots go to tests/browser/artifacts/
#   UPDATE_SCREENSHOTS=1 bash tests/browser/run.sh   # ...to docs/images/console-*.png
#
# The last lines are node's test summary; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")"
REPO="$(cd ../.. && pwd)"
export SLUICE_BIN="${SLUICE_BIN:-$REPO/target/debug/sluice}"
if [ ! -x "$SLUICE_BIN" ]; then
  echo "tests/browser/run.sh: SLUICE_BIN=$SLUICE_BIN is not an executable file (build it first)" >&2
  exit 2
fi

export CHROMIUM_BIN="${CHROMIUM_BIN:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM_BIN" ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "tests/browser/run.sh: installing Debian's chromium (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  else
    echo "tests/browser/run.sh: $CHROMIUM_BIN is missing; install chromium (apt-get install chromium) or set CHROMIUM_BIN" >&2
    exit 2
  fi
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "tests/browser/run.sh: node and npm are needed" >&2
  exit 2
fi

npm ci --no-audit --no-fund --loglevel=error

# Files one at a time (each starts its own server and browser); bounded: 90 s a test.
concurrency=()
if node --help 2>/dev/null | grep -q -- '--test-concurrency'; then concurrency=(--test-concurrency=1); fi
exec timeout 300 node --test "${concurrency[@]}" --test-timeout=90000 --test-reporter=spec ./*.test.mjs
