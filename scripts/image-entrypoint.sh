#!/bin/sh
# The image's entry point (see the Dockerfile): `worker` (the default) or `signaler`, then their arguments; arguments
# that start with `-` alone are the worker's (`--check-config`); any other command runs as given (`sh`, `id`).
# exec: node becomes PID 1 and receives the SIGTERM of a pod's shutdown itself (both handle it).
set -eu
cd /app
# WORKER_NODE_FLAGS, SIGNALER_NODE_FLAGS, worker_environment: written in the build by scripts/image-launch.ts from the
# lists `npm start` uses, so the image starts them exactly as the tests and the benchmarks do.
. /app/dist/launch.sh

case "${1:-worker}" in
  worker | -*)
    if [ "${1:-}" = worker ]; then shift; fi
    worker_environment
    # shellcheck disable=SC2086 # one word per flag
    exec node $WORKER_NODE_FLAGS dist/worker/main.js "$@"
    ;;
  signaler)
    shift
    # shellcheck disable=SC2086 # one word per flag
    exec node $SIGNALER_NODE_FLAGS dist/signaler/main.js "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
