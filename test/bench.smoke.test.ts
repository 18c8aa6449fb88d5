// The benchmark itself stays runnable: a tiny mass interruption (4 nodes, 5 s launches) through `node
// dist/bench/mass-interruption.js` on the real peers, both strategies, and its JSON report read back. The numbers
// that matter come from `npm run bench -- --nodes 500` (README, "Scale"); this only proves the tool and its books.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StrategyResult } from '../bench/mass-interruption.js';

const benchMain = fileURLToPath(new URL('../bench/mass-interruption.js', import.meta.url));

describe('mass-interruption benchmark (smoke run on the real peers)', function () {
  this.timeout(600_000);

  it('runs both strategies and writes a report whose books balance for Spot Guard', async function () {
    const dir = mkdtempSync(join(tmpdir(), 'spot-guard-bench-'));
    try {
      const output: string[] = [];
      const code = await new Promise<number | null>((resolve) => {
        const child = spawn(process.execPath, [benchMain, '--nodes', '4', '--in-service-delay', '5', '--spread', '1'], {
          env: { ...process.env, SPOT_GUARD_BENCH_RESULTS: dir },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        child.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString()));
        child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString()));
        child.on('exit', resolve);
      });
      assert.equal(code, 0, output.join('').slice(-3000));
      const report = JSON.parse(readFileSync(join(dir, 'mass-interruption-n4.json'), 'utf8')) as { results: StrategyResult[] };
      const [ours, naive] = report.results;
      assert.equal(ours?.strategy, 'spot-guard');
      assert.equal(naive?.strategy, 'naive');
      assert.equal(ours.lostIncrements, 0);
      assert.equal(ours.finalDesired, 8);
      assert.equal(ours.replacements.distinctInstances, 4, 'each warned node got an instance of its own');
      assert.ok(ours.autoScalingCalls.byAction.SetDesiredCapacity !== undefined && ours.autoScalingCalls.byAction.SetDesiredCapacity <= 2);
      assert.ok(naive.autoScalingCalls.total > 0);
      assert.match(output.join(''), /\| lost increments \| 0 \|/);
      assert.ok((ours.cpuSecondsByPeer.worker ?? 0) > 0, `the worker's CPU time is measured: ${JSON.stringify(ours.cpuSecondsByPeer)}`);
      assert.ok((ours.cpuSecondsByPeer['temporal dev server'] ?? 0) > 0, 'so is the Temporal dev server\'s');
      assert.match(output.join(''), /\| CPU s: worker \|/);
      // Each warned node was tainted and cordoned: patches of nodes the API server counted.
      assert.ok((ours.kubernetesRequests['PATCH nodes'] ?? 0) >= 4, `Kubernetes requests are counted: ${JSON.stringify(ours.kubernetesRequests)}`);
      // The dev server's writes are counted from its own metrics: at least a start, a signal and a task per workflow.
      assert.ok(ours.temporalWrites.workflowUpdatesPerWarnedNode >= 3, `Temporal writes are counted: ${JSON.stringify(ours.temporalWrites)}`);
      assert.ok(naive.temporalWrites.workflowUpdates > 0);
      assert.match(output.join(''), /\| Temporal workflow updates \(per warned node\) \|/);
      // All 4 got their taint lag broken down from their histories.
      assert.equal(ours.taintLagStages.measured, 4, JSON.stringify(ours.taintLagStages));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
