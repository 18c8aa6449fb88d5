// The worker as users start it: `npm start` refusing a bad value, and the real process with no TEMPORAL_ADDRESS
// starting the embedded Temporal dev server from the peers cache, polling its task queue, and stopping on SIGTERM.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import { WORKER_NODE_FLAGS } from '../worker/memory.js';
import { monitorWorkflowId } from '../workflows/shared/ids.js';
import { allSearchAttributeKeys } from '../workflows/shared/search-attributes.js';
import { samplesOf } from '../scripts/peers/prometheus.js';
import { freePort, until } from '../scripts/peers/wait.js';
import { embeddedDevServerWorkerEnv } from './helpers/worker-process.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const workerMain = join(repoRoot, 'dist', 'worker', 'main.js');

/** A JSON log line's message; any other line (npm's, the build's) as it is. */
function messageOf(line: string): string {
  try {
    const record = JSON.parse(line) as { message?: unknown };
    return typeof record.message === 'string' ? record.message : line;
  } catch {
    return line;
  }
}

/** output: the log's messages, one a line (stdout is a pipe, so the worker writes JSON lines); raw: what it wrote. */
function collect(child: ChildProcess): { output: () => string; raw: () => string; exit: Promise<number | null> } {
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return { output: () => output.split('\n').map(messageOf).join('\n'), raw: () => output, exit: new Promise((resolve) => child.once('exit', (code) => resolve(code))) };
}

describe('worker process', function () {
  this.timeout(120_000);

  it('`npm start` with SPOT_GUARD_CAPACITY_CHECK_TIMEOUT=abc exits non-zero naming the variable', async function () {
    const child = spawn('npm', ['start', '--silent'], {
      cwd: repoRoot,
      env: { ...process.env, SPOT_ASG_NAME: 'spot', ON_DEMAND_ASG_NAME: 'od', SPOT_GUARD_CAPACITY_CHECK_TIMEOUT: 'abc', TEMPORAL_ADDRESS: '' },
    });
    const { output, exit } = collect(child);
    const code = await exit;
    assert.notEqual(code, 0);
    assert.match(output(), /configuration error: SPOT_GUARD_CAPACITY_CHECK_TIMEOUT="abc" is not a duration/);
    assert.doesNotMatch(output(), /starting the embedded Temporal dev server/, 'nothing started');
  });

  it('a metrics port already in use: exits with status 2 naming SPOT_GUARD_METRICS_ADDRESS, before starting anything', async function () {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { port } = taken.address() as AddressInfo;
    try {
      const child = spawn(process.execPath, [...WORKER_NODE_FLAGS, workerMain], {
        env: { ...process.env, TEMPORAL_ADDRESS: '', SPOT_ASG_NAME: 'spot', ON_DEMAND_ASG_NAME: 'od', AWS_REGION: 'us-east-1', SPOT_GUARD_METRICS_ADDRESS: `127.0.0.1:${port}` },
      });
      const { output, exit } = collect(child);
      assert.equal(await exit, 2, output());
      assert.match(output(), new RegExp(`cannot serve metrics on SPOT_GUARD_METRICS_ADDRESS="127\\.0\\.0\\.1:${port}" \\(.*in use.*\\): choose a free port on this host, or off`));
      assert.doesNotMatch(output(), /starting the embedded Temporal dev server/, 'nothing started');
    } finally {
      taken.close();
    }
  });

  it('a removed setting still set (SPOT_GUARD_WORKFLOW_STACK_TRACES): exits with status 2 naming it, before starting anything', async function () {
    const child = spawn(process.execPath, [...WORKER_NODE_FLAGS, workerMain], {
      env: { ...process.env, TEMPORAL_ADDRESS: '', SPOT_ASG_NAME: 'spot', ON_DEMAND_ASG_NAME: 'od', AWS_REGION: 'us-east-1', SPOT_GUARD_WORKFLOW_STACK_TRACES: 'off' },
    });
    const { output, exit } = collect(child);
    assert.equal(await exit, 2, output());
    assert.match(output(), /configuration error: SPOT_GUARD_WORKFLOW_STACK_TRACES="off" .*removed/);
    assert.doesNotMatch(output(), /starting the embedded Temporal dev server/, 'nothing started');
  });

  it('in a Kubernetes cluster without TEMPORAL_ADDRESS: exits with status 2 in one line naming TEMPORAL_ADDRESS, before starting anything', async function () {
    const child = spawn(process.execPath, [...WORKER_NODE_FLAGS, workerMain], {
      env: { ...process.env, TEMPORAL_ADDRESS: '', KUBERNETES_SERVICE_HOST: '10.96.0.1', SPOT_ASG_NAME: 'spot', ON_DEMAND_ASG_NAME: 'od', AWS_REGION: 'us-east-1' },
    });
    const { output, exit } = collect(child);
    assert.equal(await exit, 2, output());
    const errors = output().split('\n').filter((line) => line.startsWith('configuration error:'));
    assert.equal(errors.length, 1, output());
    assert.match(errors[0] ?? '', /TEMPORAL_ADDRESS is not set/);
    assert.doesNotMatch(output(), /starting the embedded Temporal dev server/, 'nothing started');
  });

  it('without TEMPORAL_ADDRESS starts the embedded dev server, polls its task queue, serves its metrics, and stops on SIGTERM', async function () {
    const [port, uiPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
    const dataDir = mkdtempSync(join(tmpdir(), 'spot-guard-worker-'));
    const child = spawn(process.execPath, [...WORKER_NODE_FLAGS, workerMain], {
      env: { ...embeddedDevServerWorkerEnv({ port, uiPort }, dataDir), SPOT_GUARD_HEAP_GROWTH_PERCENT: '30', SPOT_GUARD_METRICS_ADDRESS: `127.0.0.1:${metricsPort}` },
    });
    const { output, raw, exit } = collect(child);
    try {
      await until('the worker to poll', () => output().includes('worker polling task queues "spot-guard" and "spot-guard-groups"'), 90_000);
      for (const line of raw().split('\n').filter((l) => l.trim())) {
        const record = JSON.parse(line) as Record<string, unknown>;
        assert.ok(record.level && record.time && typeof record.message === 'string', `a JSON log line with level, time and message: ${line}`);
      }
      // Started as npm start starts it: nothing missing, and the growth it was given.
      assert.match(output(), /^(no memory limit|memory limit \d+ MiB): V8 heap limit \d+ MiB per thread[^\n]*; heaps collected when they grow 30% past their live data/m);
      assert.doesNotMatch(output(), /started without/);
      const connection = await Connection.connect({ address: `127.0.0.1:${port}` });
      try {
        for (const name of ['spot-guard', 'spot-guard-groups']) {
          await until(`pollers on the task queue ${name}`, async () => {
            const queue = await connection.workflowService.describeTaskQueue({
              namespace: 'default',
              taskQueue: { name },
              taskQueueType: proto.temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            });
            return (queue.pollers ?? []).length > 0;
          }, 20_000);
        }
        const attributes = await connection.operatorService.listSearchAttributes({ namespace: 'default' });
        for (const key of allSearchAttributeKeys) assert.ok(attributes.customAttributes?.[key.name] !== undefined, `${key.name} registered`);
        const monitor = await new Client({ connection }).workflow.getHandle(monitorWorkflowId('spot', 'od')).describe();
        assert.equal(monitor.status.name, 'RUNNING', 'the worker starts the revert-to-spot monitor of its pair');
        assert.equal(monitor.taskQueue, 'spot-guard-groups', 'the per-group workflows run on their own task queue');
        // The SDK's stack traces are on, as by default (the Temporal UI's Stack Trace tab): the waiting monitor's stack.
        const stackTrace = await new Client({ connection }).workflow.getHandle(monitorWorkflowId('spot', 'od')).query<string>('__stack_trace');
        assert.equal(typeof stackTrace, 'string');
        assert.match(stackTrace, /monitor/, `the stack names the monitor workflow's source: ${stackTrace}`);
      } finally {
        await connection.close();
      }
      const ui = await fetch(`http://127.0.0.1:${uiPort}/`);
      assert.equal(ui.status, 200, 'the Temporal UI answers');
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const resident = /^spot_guard_worker_resident_memory_bytes (\d+)$/m.exec(metrics);
      assert.ok(resident && Number(resident[1]) > 10 * 2 ** 20, `the worker's resident memory in ${metrics.slice(0, 2000)}`);
      assert.match(metrics, /^spot_guard_worker_heap_used_bytes \d+$/m);
      assert.match(metrics, /^temporal_num_pollers\{.*poller_type="sticky_workflow_task".*\} \d+$/m, "the SDK's own metrics: its sticky pollers");
      const workflowSlots = samplesOf(metrics, 'temporal_worker_task_slots_available').find(
        ({ labels }) => labels.task_queue === 'spot-guard' && labels.worker_type === 'WorkflowWorker',
      );
      assert.equal(workflowSlots?.value, 100, 'SPOT_GUARD_WORKFLOW_TASK_SLOTS (100) rebalance workflow tasks at once');

      child.kill('SIGTERM');
      assert.equal(await exit, 0, output());
      assert.match(output(), /worker stopped/);
      await until('the dev server to stop', async () => {
        try {
          await fetch(`http://127.0.0.1:${uiPort}/`);
          return false;
        } catch {
          return true;
        }
      }, 15_000);
      // Bytes 18 and 19 of an SQLite header are its write and read format versions: 2 means write-ahead logging.
      const header = readFileSync(join(dataDir, 'temporal.sqlite')).subarray(0, 20);
      assert.deepEqual([header[18], header[19]], [2, 2], 'the dev server keeps its SQLite database in write-ahead-log mode');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
