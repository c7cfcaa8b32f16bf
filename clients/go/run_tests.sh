#!/usr/bin/env bash
# Runs go vet and go test for the Go client against a real server ($SLUICE_BIN, default
# target/debug/sluice of this repository); the tests start and stop their own servers.
# Exits non-zero on any failure; go test's summary is printed last.
set -euo pipefail
cd "$(dirname "$0")"
REPO="$(cd ../.. && pwd)"
if ! command -v go >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq golang-go >/dev/null
  else
    echo "run_tests.sh: go is not installed (apt-get install golang-go)" >&2
    exit 1
  fi
fi
if [ -z "${SLUICE_BIN:-}" ]; then
  for b in "$REPO/target/debug/sluice" "$REPO/target/release/sluice"; do
    if [ -x "$b" ]; then SLUICE_BIN="$b"; break; fi
  done
fi
if [ -z "${SLUICE_BIN:-}" ] || [ ! -x "$SLUICE_BIN" ]; then
  echo "run_tests.sh: no sluice binary: set SLUICE_BIN or build target/debug/sluice" >&2
  exit 1
fi
export SLUICE_BIN
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export GOPROXY=off
go version
go vet ./...
go test -count=1 -timeout 600s ./... 2>&1
