// The worker's probes (worker/health.ts), which deploy/base/worker.yaml's startup, liveness and readiness probes call:
// /readyz follows the Temporal workers' state, in a real worker process against the embedded dev server and with
// the states a worker goes through; a bad SPOT_GUARD_HEALTH_ADDRESS stops the worker before anything starts.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../worker/config.js';
import { startHealthServer } from '../worker/health.js';
import { WORKER_NODE_FLAGS } from '../worker/memory.js';
import { embeddedDevServerWorkerEnv } from './helpers/worker-process.js';
import { stopOnExit } from '../scripts/peers/stop-on-exit.js';
import { freePort, until } from '../scripts/peers/wait.js';

const workerMain = join(fileURLToPath(new URL('../../', import.meta.url)), 'dist', 'worker', 'main.js');

const status = async (url: string): Promise<number> => (await fetch(url)).status;

describe('worker probes (SPOT_GUARD_HEALTH_ADDRESS)', function () {
  this.timeout(120_000);

  it('/readyz is 200 only while every worker is RUNNING; /healthz is 200 throughout; other paths 404', async function () {
    let states: string[] = [];
    const health = await startHealthServer('127.0.0.1:0', () => states);
    const url = `http://127.0.0.1:${health.port}`;
    try {
      const seen: Record<string, number> = {};
      for (const now of [[], ['INITIALIZED', 'INITIALIZED'], ['RUNNING', 'INITIALIZED'], ['RUNNING', 'RUNNING'], ['STOPPING', 'RUNNING'], ['DRAINED', 'STOPPED'], ['FAILED', 'RUNNING']]) {
        states = now;
        seen[now.join(',') || 'none'] = await status(`${url}/readyz`);
        assert.equal(await status(`${url}/healthz`), 200);
      }
      assert.deepEqual(seen, {
        none: 503,
        'INITIALIZED,INITIALIZED': 503,
        'RUNNING,INITIALIZED': 503,
        'RUNNING,RUNNING': 200,
        'STOPPING,RUNNING': 503,
        'DRAINED,STOPPED': 503,
        'FAILED,RUNNING': 503,
      });
      assert.equal(await status(`${url}/metrics`), 404);
    } finally {
      await health.close();
    }
  });

  it('the setting: off by default, an IP address and port, anything else refused naming it', function () {
    const base = { SPOT_ASG_NAME: 'spot', ON_DEMAND_ASG_NAME: 'od' };
    const off = loadConfig(base);
    assert.ok(off.ok && off.config.healthAddress === undefined);
    const on = loadConfig({ ...base, SPOT_GUARD_HEALTH_ADDRESS: '0.0.0.0:8080' });
    assert.ok(on.ok && on.config.healthAddress === '0.0.0.0:8080');
    const bad = loadConfig({ ...base, SPOT_GUARD_HEALTH_ADDRESS: 'localhost:8080' });
    assert.ok(!bad.ok);
    assert.match(bad.errors.join('\n'), /SPOT_GUARD_HEALTH_ADDRESS="localhost:8080" is not an address to listen on/);
  });

  it('a real worker: /readyz 200 once it polls the embedded dev server, and the probes gone after SIGTERM', async function () {
    const [port, uiPort, healthPort] = [await freePort(), await freePort(), await freePort()];
    const dataDir = mkdtempSync(join(tmpdir(), 'spot-guard-health-'));
    const child: ChildProcess = spawn(process.execPath, [...WORKER_NODE_FLAGS, workerMain], {
      env: { ...embeddedDevServerWorkerEnv({ port, uiPort }, dataDir), SPOT_GUARD_HEALTH_ADDRESS: `127.0.0.1:${healthPort}` },
    });
    stopOnExit(child, () => rmSync(dataDir, { recursive: true, force: true }));
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const url = `http://127.0.0.1:${healthPort}`;
    try {
      await until('the worker ready', async () => (await status(`${url}/readyz`)) === 200, 90_000, () => output);
      assert.match(output, /worker polling task queues/, 'ready once it polls');
      assert.equal(await status(`${url}/healthz`), 200);
      child.kill('SIGTERM');
      assert.equal(await exit, 0, output);
      await assert.rejects(fetch(`${url}/healthz`), 'the probe server closed with the worker');
    } finally {
      // SIGTERM first: the worker stops the dev server it started.
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await Promise.race([exit, new Promise((resolve) => setTimeout(resolve, 15_000))]);
        child.kill('SIGKILL');
      }
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
