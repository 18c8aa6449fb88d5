#!/usr/bin/env node
// Patches the installed @temporalio/worker so that a workflow-call timeout at Node's maximum means "no timeout".
//
// Why: the SDK calls into workflow code through vm.runInContext with a `timeout` (its deadlock detection, 5 s by
// default), and Node starts and joins a watchdog thread for every such call (nodejs/node#47739). A rebalance workflow
// makes 3-5 calls per activation; in a wave of 500 that was about 44 of the workflow thread's 75 busy CPU-seconds on
// a 2-core machine, and the workflow tasks queued behind it. The worker passes Node's maximum (2^32 - 1 ms, which the
// SDK itself uses in debug mode) only when SPOT_GUARD_WORKFLOW_DEADLOCK_TIMEOUT is "off"; any other timeout works as
// before. See "Workflow deadlock detection" in README.md.
//
// Run by npm after `npm ci` (postinstall) and by scripts/setup.sh. Idempotent. `--check` changes nothing and exits 1
// when the installed SDK is not patched.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const SDK_VERSION = '1.24.0';
const FILES = ['lib/workflow/reusable-vm.js', 'lib/workflow/vm.js'];
const ORIGINAL = 'timeout: isolateExecutionTimeoutMs,';
// The marker the worker looks for at start (worker/workflow-calls.ts) to warn when the patch is missing.
export const MARKER = '/* spot-guard: no watchdog thread without a limit */';
const PATCHED = `timeout: isolateExecutionTimeoutMs >= 4294967295 ? undefined : isolateExecutionTimeoutMs, ${MARKER}`;

/** The patched text of one SDK file, or an error naming what was expected. */
export function patchText(text, file) {
  const original = text.split(ORIGINAL).length - 1;
  const patched = text.split(PATCHED).length - 1;
  if (original === 0 && patched > 0) return { text, changed: false };
  if (original === 0) {
    throw new Error(`${file}: found no "${ORIGINAL}" to patch: the SDK changed; update scripts/patch-temporal-worker.mjs`);
  }
  return { text: text.split(ORIGINAL).join(PATCHED), changed: true };
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
