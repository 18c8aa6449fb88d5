import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import {
  NO_WORKFLOW_CALL_TIMEOUT_MS,
  STACK_TRACE_PATCH_MARKER,
  STACK_TRACES_VARIABLE,
  setWorkflowStackTraces,
  stackTracePatchApplied,
  WATCHDOG_PATCH_MARKER,
  watchdogPatchApplied,
  workflowCallTimeout,
} from '../worker/sdk-patches.js';
import { capacityWorkflow } from '../workflows/capacity/workflow.js';
import { rememberEnvironment } from './helpers/environment.js';
import { createTimeSkippingEnv, workflowBundle } from './helpers/temporal.js';

interface PatchScript {
  SDK_VERSION: string;
  MARKER: string;
  STACK_TRACE_MARKER: string;
  STACK_TRACES_VARIABLE: string;
  patchText(text: string, file: string): { text: string; changed: boolean };
}

const script = fileURLToPath(new URL('../../scripts/patch-temporal-worker.mjs', import.meta.url));
const load = async (): Promise<PatchScript> => (await import(script)) as PatchScript;

const callIntoWorkflow = `return callIntoVmScript.runInContext(context, {
    timeout: isolateExecutionTimeoutMs,
    displayErrors: true,
});`;

const installPromiseHook = `install() {
    if (!this.installed) {
        this.overridePrepareStackTrace();
        this.setPromiseHook();
        this.installed = true;
    }
}`;

describe('the @temporalio/worker patches (no watchdog thread per workflow call without a limit, stack traces switchable)', function () {
  it('are applied to the installed SDK, at the version they were written for', async function () {
    const script = await load();
    const installed = JSON.parse(readFileSync(createRequire(import.meta.url).resolve('@temporalio/worker/package.json'), 'utf8')) as { version: string };
    assert.equal(installed.version, script.SDK_VERSION);
    assert.equal(script.MARKER, WATCHDOG_PATCH_MARKER, 'the worker looks for the markers the script writes');
    assert.equal(script.STACK_TRACE_MARKER, STACK_TRACE_PATCH_MARKER);
    assert.equal(script.STACK_TRACES_VARIABLE, STACK_TRACES_VARIABLE, 'the patched SDK reads the variable the worker sets');
    assert.equal(watchdogPatchApplied(), true, 'run npm ci (postinstall) or node scripts/patch-temporal-worker.mjs');
    assert.equal(stackTracePatchApplied(), true, 'run npm ci (postinstall) or node scripts/patch-temporal-worker.mjs');
  });

  it('drops the timeout only at Node\'s maximum, keeps any other, and changes nothing the second time', async function () {
    const { patchText } = await load();
    const once = patchText(callIntoWorkflow, 'lib/workflow/reusable-vm.js');
    assert.equal(once.changed, true);
    assert.match(once.text, /timeout: isolateExecutionTimeoutMs >= 4294967295 \? undefined : isolateExecutionTimeoutMs,/);
    const twice = patchText(once.text, 'lib/workflow/reusable-vm.js');
    assert.deepEqual(twice, { text: once.text, changed: false });
    // The patched expression, evaluated: no timeout (no watchdog thread) at the maximum, the same timeout otherwise.
    const timeoutFor = (isolateExecutionTimeoutMs: number): unknown =>
      // eslint-disable-next-line @typescript-eslint/no-implied-eval, @typescript-eslint/no-unsafe-call -- runs the patched SDK source text on purpose
      new Function('isolateExecutionTimeoutMs', `return { ${once.text.match(/timeout: [^\n]*/)?.[0]} }.timeout;`)(isolateExecutionTimeoutMs);
    assert.equal(timeoutFor(NO_WORKFLOW_CALL_TIMEOUT_MS), undefined);
    assert.equal(timeoutFor(5000), 5000);
  });

  it('installs the promise hook unless the variable says off, and changes nothing the second time', async function () {
    const { patchText } = await load();
    const once = patchText(installPromiseHook, 'lib/workflow/vm-shared.js');
    assert.equal(once.changed, true);
    assert.deepEqual(patchText(once.text, 'lib/workflow/vm-shared.js'), { text: once.text, changed: false }, 'the patched line still holds the call');
    assert.equal(once.text.split('setPromiseHook()').length - 1, 1);
    // The patched install(), run: the hook only when the variable is not "off".
    const hooked = (value: string | undefined): boolean => {
      let hook = false;
      const handlers = { installed: false, overridePrepareStackTrace: () => undefined, setPromiseHook: () => (hook = true) };
      // eslint-disable-next-line @typescript-eslint/no-implied-eval, @typescript-eslint/no-unsafe-call -- runs the patched SDK source text on purpose
      const install = new Function('process', `return function ${once.text}`)({ env: { [STACK_TRACES_VARIABLE]: value } }) as () => void;
      install.call(handlers);
      return hook;
    };
    assert.equal(hooked('off'), false);
    assert.equal(hooked('on'), true);
    assert.equal(hooked(undefined), true, "unset: the SDK's own behaviour");
  });

  it('refuses an SDK file that no longer has the call it patches, or a file it does not patch, naming the file', async function () {
    const { patchText } = await load();
    assert.throws(() => patchText('runInContext(context, { displayErrors: true })', 'lib/workflow/vm.js'), /lib\/workflow\/vm\.js: found no "timeout: isolateExecutionTimeoutMs," to patch/);
    assert.throws(() => patchText('install() {}', 'lib/workflow/vm-shared.js'), /lib\/workflow\/vm-shared\.js: found no "this.setPromiseHook\(\);" to patch/);
    assert.throws(() => patchText('', 'lib/worker.js'), /lib\/worker\.js: not a file this script patches/);
  });

  it('gives the SDK no limit when the deadlock timeout is off, else the timeout in seconds', function () {
    assert.equal(workflowCallTimeout(undefined), NO_WORKFLOW_CALL_TIMEOUT_MS);
    assert.equal(workflowCallTimeout(5), '5s');
  });
});

describe('workflow stack traces (the Temporal UI\'s Stack Trace tab), as the worker sets them', function () {
  this.timeout(60_000);
  let env: TestWorkflowEnvironment;
  before(async function () {
    env = await createTimeSkippingEnv();
  });
  after(async () => env?.teardown());

  const causes = (error: unknown): string[] => (error instanceof Error ? [error.message, ...causes(error.cause)] : []);

  /** What a running workflow answers to the SDK's __stack_trace query on a worker created with the setting. */
  async function stackTraceAnswer(enabled: boolean): Promise<string> {
    const restore = rememberEnvironment([STACK_TRACES_VARIABLE]);
    const taskQueue = `stack-traces-${randomUUID()}`;
    let worker: Worker;
    try {
      setWorkflowStackTraces(enabled);
      worker = await Worker.create({ connection: env.nativeConnection, taskQueue, workflowBundle: await workflowBundle() });
    } finally {
      restore();
    }
    return worker.runUntil(async () => {
      // A capacity workflow with nothing to do waits for requests without activities.
      const handle = await env.client.workflow.start(capacityWorkflow, { args: [{ asgName: 'stack-trace-group' }], taskQueue, workflowId: taskQueue });
      try {
        return await handle.query<string>('__stack_trace').catch((error: unknown) => `query failed: ${causes(error).join(': ')}`);
      } finally {
        await handle.terminate();
      }
    });
  }

  it('off: no stack per promise, and the query says why', async function () {
    assert.match(await stackTraceAnswer(false), /query failed: .*Workflow stack traces are not enabled on this worker/);
  });

  it('on: the SDK\'s stack traces, down to the workflow\'s own source', async function () {
    assert.match(await stackTraceAnswer(true), /workflows\/capacity\.ts/);
  });
});
