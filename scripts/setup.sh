#!/usr/bin/env bash
# Sets up a machine for Spot Guard: the pinned peers (scripts/peers.sh) and the npm dependencies from the lock file.
# Idempotent and quiet when there is nothing to do. Source it to get Node.js 24 first on PATH:
#   . scripts/setup.sh            every peer, for the tests (scripts/test)
#   . scripts/setup.sh --worker   only what the worker runs on: Node.js and the Temporal CLI (scripts/start)
set -euo pipefail
SPOT_GUARD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Only an explicit --worker selects the worker's peers: a sourced script sees its caller's arguments (scripts/test's
# are mocha's), which must not reach peers.sh.
if [ "${1:-}" = "--worker" ]; then "$SPOT_GUARD_ROOT/scripts/peers.sh" --worker; else "$SPOT_GUARD_ROOT/scripts/peers.sh"; fi
# shellcheck disable=SC1091
. "${SPOT_GUARD_CACHE:-$HOME/.cache/spot-guard}/peers.env"
export PATH="$SPOT_GUARD_NODE_BIN:$PATH"
export SPOT_GUARD_TEMPORAL_CLI SPOT_GUARD_TEMPORAL_TEST_SERVER SPOT_GUARD_PYTHON SPOT_GUARD_KUBE_APISERVER SPOT_GUARD_KUBE_CONTROLLER_MANAGER SPOT_GUARD_KUBE_SCHEDULER SPOT_GUARD_KUBECTL SPOT_GUARD_ETCD SPOT_GUARD_KWOK SPOT_GUARD_AEMM SPOT_GUARD_COMPOSE SPOT_GUARD_BASE_IMAGE

lock_hash=$(sha256sum "$SPOT_GUARD_ROOT/package-lock.json" | cut -d' ' -f1)
stamp="$SPOT_GUARD_ROOT/node_modules/.spot-guard-lock-sha256"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
  echo "[setup] installing npm dependencies (node $(node --version))" >&2
  (cd "$SPOT_GUARD_ROOT" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_hash" >"$stamp"
fi
