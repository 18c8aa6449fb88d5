#!/usr/bin/env node
// Patches the installed @temporalio/worker in two places, each measured in a wave of 500 rebalance workflows on a
// 2-core machine, each switched by the worker's configuration (see README.md, "Workflow deadlock detection" and
// "Workflow stack traces"):
//
// 1. A workflow-call timeout at Node's maximum means "no timeout". The SDK calls into workflow code through
//    vm.runInContext with a `timeout` (its deadlock detection, 5 s by default), and Node starts and joins a watchdog
//    thread for every such call (nodejs/node#47739): about 44 of the workflow thread's 75 busy CPU-seconds. The worker
//    passes Node's maximum (2^32 - 1 ms, which the SDK itself uses in debug mode) only when
//    SPOT_GUARD_WORKFLOW_DEADLOCK_TIMEOUT is "off"; any other timeout works as before.
// 2. No promise hook when SPOT_GUARD_WORKFLOW_STACK_TRACES is "off" in the workflow thread's environment. For the
//    Temporal UI's Stack Trace tab the SDK creates an Error for every promise workflow code makes and maps its stack
//    through the bundle's source map: the largest single cost left on the workflow thread. Unset, or any other value,
//    keeps the SDK's behaviour.
//
// Run by npm after `npm ci` (postinstall) and by scripts/setup.sh. Idempotent. `--check` changes nothing and exits 1
// when the installed SDK is not patched.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const SDK_VERSION = '1.24.0';
// The markers the worker looks for at start (worker/sdk-patches.ts) to warn when a patch is missing.
export const MARKER = '/* spot-guard: no watchdog thread without a limit */';
export const STACK_TRACE_MARKER = '/* spot-guard: promise stack traces unless switched off */';
/** Set by the worker before it creates its workflow threads, which copy its environment. */
export const STACK_TRACES_VARIABLE = 'SPOT_GUARD_WORKFLOW_STACK_TRACES';

const PATCHES = [
  {
    files: ['lib/workflow/reusable-vm.js', 'lib/workflow/vm.js'],
    original: 'timeout: isolateExecutionTimeoutMs,',
    patched: `timeout: isolateExecutionTimeoutMs >= 4294967295 ? undefined : isolateExecutionTimeoutMs, ${MARKER}`,
  },
  {
    files: ['lib/workflow/vm-shared.js'],
    original: 'this.setPromiseHook();',
    patched: `if (process.env.${STACK_TRACES_VARIABLE} !== 'off') this.setPromiseHook(); ${STACK_TRACE_MARKER}`,
  },
];
const FILES = [...new Set(PATCHES.flatMap((patch) => patch.files))];

/** The patched text of one SDK file (named by its path in the package), or an error naming what was expected. */
export function patchText(text, file) {
  if (!FILES.includes(file)) throw new Error(`${file}: not a file this script patches (${FILES.join(', ')})`);
  let result = text;
  let changed = false;
  for (const { original, patched } of PATCHES.filter((p) => p.files.includes(file))) {
    // A patched text may contain the original (the promise hook call does): count only the calls left unpatched.
    const unpatched = result.split(patched).join('').split(original).length - 1;
    if (unpatched === 0 && result.includes(patched)) continue;
    if (unpatched === 0) {
      throw new Error(`${file}: found no "${original}" to patch: the SDK changed; update scripts/patch-temporal-worker.mjs`);
    }
    result = result.split(patched).join(original).split(original).join(patched);
    changed = true;
  }
  return { text: result, changed };
}

function main(argv) {
  const check = argv.includes('--check');
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', 'node_modules', '@temporalio', 'worker');
  let version;
  try {
    version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
  } catch {
    console.error(`[patch-temporal-worker] @temporalio/worker is not installed under ${root}: run npm ci first`);
    return 1;
  }
  if (version !== SDK_VERSION) {
    console.error(`[patch-temporal-worker] @temporalio/worker is ${version}, the patch is for ${SDK_VERSION}: check the patch against the new SDK, then update SDK_VERSION`);
    return 1;
  }
  const missing = [];
  for (const file of FILES) {
    const path = join(root, file);
    const { text, changed } = patchText(readFileSync(path, 'utf8'), file);
    if (!changed) continue;
    if (check) missing.push(file);
    else writeFileSync(path, text);
  }
  if (check && missing.length > 0) {
    console.error(`[patch-temporal-worker] not patched: ${missing.join(', ')} (run node scripts/patch-temporal-worker.mjs)`);
    return 1;
  }
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) process.exitCode = main(process.argv.slice(2));
