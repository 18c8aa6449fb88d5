// The container image: built from the Dockerfile with buildah on the local Debian base (skipped when an image of the
// same inputs exists), then both entry points run inside it as its non-root user: `--check-config` on a valid
// environment exits 0 and says what the configuration amounts to, a refused one exits 2. The image's size is printed
// (docs/image.md quotes it).
import assert from 'node:assert/strict';
import { ensureImage, imageConfig, type RunResult, workingContainer } from '../scripts/peers/image.js';
import { SIGNALER_NODE_FLAGS } from '../signaler/node-flags.js';
import { WORKER_LAUNCH_ENV, WORKER_NODE_FLAGS } from '../worker/memory.js';

const NON_ROOT = '65532';
const WORKER_ENV = { TEMPORAL_ADDRESS: 'temporal.example.internal:7233', SPOT_ASG_NAME: 'workers-spot', ON_DEMAND_ASG_NAME: 'workers-on-demand' };
const SIGNALER_ENV = { SPOT_GUARD_INTAKE_URL: 'https://spot-guard-intake.spot-guard.svc:8443', NODE_NAME: 'ip-10-0-1-23.ec2.internal' };

const say = (line: string): void => console.log(`      [image] ${line}`);
const output = (result: RunResult): string => `exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`;

describe('container image (Dockerfile, built with buildah)', function () {
  this.timeout(120_000);
  let tag: string;
  let entrypoint: string[];
  let container: ReturnType<typeof workingContainer>;
  const run = (args: string[], env: Record<string, string> = {}): Promise<RunResult> => container.run([...entrypoint, ...args], env);

  before(async function () {
    this.timeout(35 * 60_000); // a cold build on 2 cores, npm dependencies downloaded
    const build = await ensureImage(say);
    tag = build.tag;
    say(build.built ? `built ${tag} in ${build.seconds.toFixed(0)} s` : `${tag} is up to date with its inputs: build skipped`);
    entrypoint = imageConfig(tag).entrypoint;
    container = workingContainer(tag);
  });

  after(function () {
    container?.remove();
  });

  it('runs as a numeric non-root user, with `worker` as the default command; its size is printed', function () {
    const config = imageConfig(tag);
    say(`image size ${config.size}`);
    assert.equal(config.user, `${NON_ROOT}:${NON_ROOT}`);
    assert.equal(config.entrypoint.length, 1);
    assert.deepEqual(config.cmd, ['worker']);
  });

  it('any command runs as 65532:65532, which cannot change the application', async function () {
    const ids = await run(['sh', '-c', 'id -u; id -g']);
    assert.equal(ids.code, 0, output(ids));
    assert.deepEqual(ids.stdout.trim().split('\n'), [NON_ROOT, NON_ROOT]);
    const write = await run(['touch', '/app/dist/worker/main.js']);
    assert.notEqual(write.code, 0, output(write));
  });

  it("loads the Temporal core's native library kept for this platform (the others are left out of the image)", async function () {
    const loaded = await run(['node', '-e', "require('@temporalio/core-bridge')"]);
    assert.equal(loaded.code, 0, output(loaded));
  });

  it('launches node with the flags and environment `npm start` and the benchmarks use', async function () {
    const launch = await run(['sh', '-c', '. /app/dist/launch.sh && worker_environment && printf "%s\\n" "$WORKER_NODE_FLAGS" "$SIGNALER_NODE_FLAGS" "$MALLOC_ARENA_MAX"']);
    assert.equal(launch.code, 0, output(launch));
    assert.deepEqual(launch.stdout.trim().split('\n'), [WORKER_NODE_FLAGS.join(' '), SIGNALER_NODE_FLAGS.join(' '), WORKER_LAUNCH_ENV.MALLOC_ARENA_MAX]);
  });

  it('worker --check-config: a valid environment exits 0 with its summary; the bare option is the worker too', async function () {
    for (const args of [['worker', '--check-config'], ['--check-config']]) {
      const checked = await run(args, WORKER_ENV);
      assert.equal(checked.code, 0, output(checked));
      const summary = JSON.parse(checked.stdout.slice(checked.stdout.indexOf('{'))) as Record<string, unknown>;
      assert.equal(summary.temporal, WORKER_ENV.TEMPORAL_ADDRESS);
      assert.equal(summary.spotAsgName, WORKER_ENV.SPOT_ASG_NAME);
    }
  });

  it('signaler --check-config: a valid environment exits 0 with its summary', async function () {
    const checked = await run(['signaler', '--check-config'], SIGNALER_ENV);
    assert.equal(checked.code, 0, output(checked));
    const summary = JSON.parse(checked.stdout.trim()) as Record<string, unknown>;
    assert.equal(summary.intakeUrl, SIGNALER_ENV.SPOT_GUARD_INTAKE_URL);
    assert.equal(summary.nodeName, SIGNALER_ENV.NODE_NAME);
  });

  it('refused configurations exit 2: a worker without its groups, a signaler sending its token over http', async function () {
    const worker = await run(['worker', '--check-config'], { TEMPORAL_ADDRESS: WORKER_ENV.TEMPORAL_ADDRESS });
    assert.equal(worker.code, 2, output(worker));
    const signaler = await run(['signaler', '--check-config'], { ...SIGNALER_ENV, SPOT_GUARD_INTAKE_URL: 'http://spot-guard-intake:8080' });
    assert.equal(signaler.code, 2, output(signaler));
  });
});
