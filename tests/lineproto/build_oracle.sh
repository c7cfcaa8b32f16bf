#!/usr/bin/env bash
# Builds InfluxDB's line protocol parser into a differential oracle (tests/lineproto/oracle):
# needs `go` and Debian's golang-github-influxdb-influxdb-dev (its source in /usr/share/gocode).
# Prints the binary's path; exits non-zero (printing nothing) if either is missing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
gopath="${INFLUXDB_GOPATH:-/usr/share/gocode}"
command -v go >/dev/null 2>&1 || exit 1
[ -d "$gopath/src/github.com/influxdata/influxdb/models" ] || exit 1
out="${1:-$here/../../target/influx-oracle}"
mkdir -p "$(dirname "$out")"
build="$(mktemp -d)"
cp "$here/oracle/main.go" "$build/"
(cd "$build" && GO111MODULE=off GOPATH="$gopath" GOCACHE="$build/cache" GOFLAGS= go build -o "$out" main.go) >&2
rm -rf "$build"
echo "$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
