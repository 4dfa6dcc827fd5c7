#!/usr/bin/env bash
# The registry's test command (README): installs the real servers the tests use, runs gofmt, go vet and
# the linters (workflowcheck, staticcheck), then every test with the race detector. Tests start their
# own throwaway PostgreSQL, S3 (versitygw) and Temporal servers on free loopback ports and stop them;
# nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

eval "$(scripts/install-tools.sh)"
export MODELREG_REQUIRE_SERVERS=1

echo "== gofmt / go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed: $unformatted"; exit 1; fi
go vet ./...

echo "== workflowcheck (non-deterministic workflow code)"
"$MODELREG_WORKFLOWCHECK_BIN" ./workflows/...

echo "== staticcheck"
"$MODELREG_STATICCHECK_BIN" ./...

echo "== go test -race"
go test -race -count=1 -timeout 40m "$@" ./...

echo "== total wall time: $(( $(date +%s) - start )) s"
