# One image, two entry points: `worker` (the default) and `signaler` (the on-node DaemonSet). Extra arguments pass
# through, e.g. `--check-config` (validate the configuration from the environment; exit 0 valid, 2 refused).
#   docker build -t spot-guard .
#   docker run --rm -e TEMPORAL_ADDRESS=… -e SPOT_ASG_NAME=… spot-guard worker --check-config
# BASE is any Debian-based Node.js 24 image with npm: the public one by default; the test suite builds on a local one
# made by scripts/peers.sh (no image registry there). docs/image.md says more.
ARG BASE=docker.io/library/node:24.21.0-bookworm-slim

FROM ${BASE} AS build
WORKDIR /src
# Dependencies first: this layer is reused while package*.json stay the same. --ignore-scripts: no dependency's
# install script runs (none is needed: the Temporal core ships prebuilt).
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
COPY tsconfig.json ./
COPY workflows workflows
COPY activities activities
COPY worker worker
COPY signaler signaler
COPY scripts/bundle-workflows.ts scripts/image-launch.ts scripts/
COPY bench/naive bench/naive
# launch.sh: the node flags and environment the entry point starts each process with (scripts/image-launch.ts).
# The Temporal core package ships its native library for five platforms (about 28 MB each): keep this one's.
RUN npm run build --silent \
 && node dist/scripts/image-launch.js > dist/launch.sh \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error \
 && core=node_modules/@temporalio/core-bridge/releases platform="$(uname -m)-unknown-linux-gnu" \
 && test -f "$core/$platform/index.node" \
 && find "$core" -mindepth 1 -maxdepth 1 ! -name "$platform" -exec rm -rf {} +

FROM ${BASE}
ENV NODE_ENV=production
WORKDIR /app
# Only what runs: the production dependencies, the compiled worker, signaler, activities and workflows, and the
# prebuilt workflow bundle (so the worker never runs webpack). All owned by root, so the process cannot change them.
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules node_modules
COPY --from=build /src/dist/worker dist/worker
COPY --from=build /src/dist/signaler dist/signaler
COPY --from=build /src/dist/activities dist/activities
COPY --from=build /src/dist/workflows dist/workflows
COPY --from=build /src/dist/workflow-bundle.js /src/dist/launch.sh dist/
COPY scripts/image-entrypoint.sh /usr/local/bin/spot-guard
# Numeric, so Kubernetes' runAsNonRoot can check it without a passwd entry; 65532 is the usual "nonroot" id.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/spot-guard"]
CMD ["worker"]
