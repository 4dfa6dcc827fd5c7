#!/usr/bin/env bash
# Installs what the tests and the embedded default need and is not a Go module dependency: PostgreSQL 15
# server binaries and Chromium for the web page's browser test (Debian packages), the temporal CLI, the
# versitygw S3 server and the linters (workflowcheck, staticcheck), built once from the Go module proxy
# and cached. Prints `export` lines for the paths; safe to run repeatedly.
set -euo pipefail

cache="${MODELREG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelreg}"
bin="$cache/bin"
mkdir -p "$bin"

log() { echo "install-tools: $*" >&2; }

pg_bindir() {
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir; return
  fi
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return; }
  done
}

# One apt-get run for both packages: an update alone takes longer than most test packages.
debs=()
[ -z "$(pg_bindir)" ] && debs+=(postgresql)
[ -x /usr/bin/chromium ] || debs+=(chromium)
if [ ${#debs[@]} -gt 0 ]; then
  log "installing Debian packages: ${debs[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${debs[@]}" >&2
fi

# Both are built in parallel: they are the slow part of a fresh machine (~3 min and ~1 min).
pids=()
if [ ! -x "$bin/temporal" ]; then
  log "building the temporal CLI (v1.5.1) into $bin"
  GOBIN="$bin" go install github.com/temporalio/cli/cmd/temporal@v1.5.1 >&2 & pids+=($!)
fi
if [ ! -x "$bin/versitygw" ]; then
  log "building versitygw (v1.8.0) into $bin"
  GOBIN="$bin" go install github.com/versity/versitygw/cmd/versitygw@v1.8.0 >&2 & pids+=($!)
fi
if [ ! -x "$bin/workflowcheck" ]; then
  log "building workflowcheck (v0.6.0) into $bin"
  GOBIN="$bin" go install go.temporal.io/sdk/contrib/tools/workflowcheck@v0.6.0 >&2 & pids+=($!)
fi
# The version is in the file name so that bumping it here rebuilds it instead of reusing an older one.
if [ ! -x "$bin/staticcheck-v0.8.2" ]; then
  log "building staticcheck (v0.8.2) into $bin"
  (d=$(mktemp -d "$bin/.staticcheck.XXXXXX") && GOBIN="$d" go install honnef.co/go/tools/cmd/staticcheck@v0.8.2 &&
    mv "$d/staticcheck" "$bin/staticcheck-v0.8.2" && rmdir "$d") >&2 & pids+=($!)
fi
for p in "${pids[@]}"; do wait "$p"; done

echo "export MODELREG_TEMPORAL_BIN=$bin/temporal"
echo "export MODELREG_VERSITYGW_BIN=$bin/versitygw"
echo "export MODELREG_PG_BINDIR=$(pg_bindir)"
echo "export MODELREG_WORKFLOWCHECK_BIN=$bin/workflowcheck"
echo "export MODELREG_CHROMIUM_BIN=/usr/bin/chromium"
echo "export MODELREG_STATICCHECK_BIN=$bin/staticcheck-v0.8.2"
