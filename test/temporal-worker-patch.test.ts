import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { NO_WORKFLOW_CALL_TIMEOUT_MS, WATCHDOG_PATCH_MARKER, watchdogPatchApplied, workflowCallTimeout } from '../worker/workflow-calls.js';

interface PatchScript {
  SDK_VERSION: string;
  MARKER: string;
  patchText(text: string, file: string): { text: string; changed: boolean };
}

const script = fileURLToPath(new URL('../../scripts/patch-temporal-worker.mjs', import.meta.url));
const load = async (): Promise<PatchScript> => (await import(script)) as PatchScript;

const callIntoWorkflow = `return callIntoVmScript.runInContext(context, {
    timeout: isolateExecutionTimeoutMs,
    displayErrors: true,
});`;

describe('the @temporalio/worker patch (no watchdog thread per workflow call without a limit)', function () {
  it('is applied to the installed SDK, at the version it was written for', async function () {
    const { SDK_VERSION, MARKER } = await load();
    const installed = JSON.parse(readFileSync(createRequire(import.meta.url).resolve('@temporalio/worker/package.json'), 'utf8')) as { version: string };
    assert.equal(installed.version, SDK_VERSION);
    assert.equal(MARKER, WATCHDOG_PATCH_MARKER, 'the worker looks for the marker the script writes');
    assert.equal(watchdogPatchApplied(), true, 'run npm ci (postinstall) or node scripts/patch-temporal-worker.mjs');
  });

  it('drops the timeout only at Node\'s maximum, keeps any other, and changes nothing the second time', async function () {
    const { patchText } = await load();
    const once = patchText(callIntoWorkflow, 'reusable-vm.js');
    assert.equal(once.changed, true);
    assert.match(once.text, /timeout: isolateExecutionTimeoutMs >= 4294967295 \? undefined : isolateExecutionTimeoutMs,/);
    const twice = patchText(once.text, 'reusable-vm.js');
    assert.deepEqual(twice, { text: once.text, changed: false });
    // The patched expression, evaluated: no timeout (no watchdog thread) at the maximum, the same timeout otherwise.
    const timeoutFor = (isolateExecutionTimeoutMs: number): unknown =>
      new Function('isolateExecutionTimeoutMs', `return { ${once.text.match(/timeout: [^\n]*/)?.[0]} }.timeout;`)(isolateExecutionTimeoutMs);
    assert.equal(timeoutFor(NO_WORKFLOW_CALL_TIMEOUT_MS), undefined);
    assert.equal(timeoutFor(5000), 5000);
  });

  it('refuses an SDK file that no longer has the call it patches, naming the file', async function () {
    const { patchText } = await load();
    assert.throws(() => patchText('runInContext(context, { displayErrors: true })', 'lib/workflow/vm.js'), /lib\/workflow\/vm\.js: found no "timeout: isolateExecutionTimeoutMs," to patch/);
  });

  it('gives the SDK no limit when the deadlock timeout is off, else the timeout in seconds', function () {
    assert.equal(workflowCallTimeout(undefined), NO_WORKFLOW_CALL_TIMEOUT_MS);
    assert.equal(workflowCallTimeout(5), '5s');
  });
});
