// The worker's V8 heaps: the growth factor it chooses with and without a memory limit, the note it starts with, the
// Node flags it is launched with, and (in a child process) that the factor reaches the main thread and a thread created
// after it, as the SDK's workflow threads are.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  GROWTH_PERCENT_WITHOUT_LIMIT,
  heapGrowthPercent,
  launchSettingsMissing,
  memoryNote,
  WORKER_LAUNCH_ENV,
  WORKER_NODE_FLAGS,
} from '../worker/memory.js';

const memoryModule = new URL('../worker/memory.js', import.meta.url).href;
const packageJson = fileURLToPath(new URL('../../package.json', import.meta.url));

/** Runs a main thread and then a worker thread that each churn garbage and collect, tracing V8's growth factor. */
async function growthFactorsTraced(percent: number): Promise<Map<string, string[]>> {
  const script = `
    import { Worker } from 'node:worker_threads';
    import { setFlagsFromString } from 'node:v8';
    import { applyHeapGrowth } from ${JSON.stringify(memoryModule)};
    applyHeapGrowth(${percent});
    setFlagsFromString('--trace-gc-verbose');
    const churn = "const keep = []; for (let i = 0; i < 200000; i++) keep.push({ i, text: 'x' + i }); globalThis.gc();";
    new Function(churn)();
    await new Promise((resolve, reject) => new Worker(churn, { eval: true }).on('exit', resolve).on('error', reject));
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { maxBuffer: 64 * 2 ** 20 });
  const factorsByIsolate = new Map<string, string[]>();
  for (const match of stdout.matchAll(/^\[\d+:(0x[0-9a-f]+)[^\]]*\].*\[HeapController\] factor ([\d.]+)/gm)) {
    factorsByIsolate.set(match[1], [...(factorsByIsolate.get(match[1]) ?? []), match[2]]);
  }
  return factorsByIsolate;
}

describe('worker memory', function () {
  it(`collects at ${GROWTH_PERCENT_WITHOUT_LIMIT}% growth without a memory limit and leaves V8's factor under one (auto); off and a percent apply everywhere`, function () {
    const limit = 640 * 2 ** 20;
    assert.equal(heapGrowthPercent('auto', undefined), GROWTH_PERCENT_WITHOUT_LIMIT);
    assert.equal(heapGrowthPercent('auto', limit), undefined);
    assert.equal(heapGrowthPercent('off', undefined), undefined);
    assert.equal(heapGrowthPercent('off', limit), undefined);
    assert.equal(heapGrowthPercent(50, undefined), 50);
    assert.equal(heapGrowthPercent(50, limit), 50);
  });

  it('sees which launch settings are missing: a young generation size (command line or NODE_OPTIONS) and the allocator arenas', function () {
    assert.deepEqual(launchSettingsMissing(['--max-semi-space-size=8'], { MALLOC_ARENA_MAX: '2' }), []);
    assert.deepEqual(launchSettingsMissing([], { NODE_OPTIONS: '--require x.js --max_semi_space_size=16', MALLOC_ARENA_MAX: '4' }), [], "the operator's own values count");
    assert.deepEqual(launchSettingsMissing(['--max-old-space-size=256'], { NODE_OPTIONS: '--max-semi-space-sizes' }), ['--max-semi-space-size=8', 'MALLOC_ARENA_MAX=2']);
    assert.deepEqual(launchSettingsMissing([], { MALLOC_ARENA_MAX: '2' }), ['--max-semi-space-size=8']);
  });

  it('says at start which limit it found, how the heaps collect, and what is missing', function () {
    const unlimited = memoryNote(undefined, 20, []);
    assert.match(unlimited, /^no memory limit: V8 heap limit \d+ MiB per thread, sized from the machine; heaps collected when they grow 20% past their live data \(SPOT_GUARD_HEAP_GROWTH_PERCENT\); give the worker a memory limit in production \(a pod's resources\.limits\.memory, 640Mi for waves of 500 nodes\)$/);
    const limited = memoryNote(512 * 2 ** 20, undefined, []);
    assert.match(limited, /^memory limit 512 MiB: V8 heap limit \d+ MiB per thread; heaps collected at V8's own growth factor$/);
    const unflagged = memoryNote(512 * 2 ** 20, undefined, ['--max-semi-space-size=8', 'MALLOC_ARENA_MAX=2']);
    assert.match(unflagged, /; started without --max-semi-space-size=8 and MALLOC_ARENA_MAX=2, so the worker may hold more memory \(start it with npm start, or MALLOC_ARENA_MAX=2 node --max-semi-space-size=8 dist\/worker\/main\.js\)$/);
  });

  it('`npm start` launches the worker with the Node flags and environment the tests and the benchmark use', function () {
    const start = (JSON.parse(readFileSync(packageJson, 'utf8')) as { scripts: Record<string, string> }).scripts.start ?? '';
    const environment = Object.entries(WORKER_LAUNCH_ENV).map(([name, value]) => `${name}=\${${name}:-${value}}`);
    assert.ok(start.endsWith(`${environment.join(' ')} node ${WORKER_NODE_FLAGS.join(' ')} dist/worker/main.js`), start);
  });

  for (const [percent, factor] of [[30, '1.3'], [250, '3.5']] as const) {
    it(`a growth of ${percent}% reaches the main thread and a thread started after it (V8 traces factor ${factor} in both)`, async function () {
      this.timeout(60_000);
      const factorsByIsolate = await growthFactorsTraced(percent);
      assert.equal(factorsByIsolate.size, 2, `two isolates traced: ${JSON.stringify([...factorsByIsolate])}`);
      for (const [isolate, factors] of factorsByIsolate) assert.ok(factors.every((seen) => seen === factor), `${isolate}: ${factors.join(', ')}`);
    });
  }
});
