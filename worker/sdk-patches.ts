// What the worker hands the SDK's workflow threads, and whether the installed SDK has the patches that make those
// settings cheap (scripts/patch-temporal-worker.mjs, run by npm after install). Both were measured in a wave of 500:
// - the deadlock timeout: Node starts and joins a watchdog thread for every call into workflow code that has a
//   timeout (nodejs/node#47739), most of the workflow thread's CPU; the patch reads Node's maximum as "none";
// - stack traces: for the Temporal UI's Stack Trace tab the SDK creates an Error for every promise workflow code makes
//   and maps its stack through the source map; the patch skips that promise hook when switched off.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/** Node's largest vm timeout (about 49.7 days), which the SDK also uses in debug mode: the patch reads it as none. */
export const NO_WORKFLOW_CALL_TIMEOUT_MS = 4_294_967_295;

/** Written by scripts/patch-temporal-worker.mjs into the SDK's files it patched. */
export const WATCHDOG_PATCH_MARKER = '/* spot-guard: no watchdog thread without a limit */';
export const STACK_TRACE_PATCH_MARKER = '/* spot-guard: promise stack traces unless switched off */';
/** Read by the patched SDK in each workflow thread: "off" installs no promise hook. */
export const STACK_TRACES_VARIABLE = 'SPOT_GUARD_WORKFLOW_STACK_TRACES';

/** The SDK's isolateExecutionTimeout for a deadlock timeout in seconds, or for none. */
export function workflowCallTimeout(deadlockTimeoutSeconds: number | undefined): string | number {
  return deadlockTimeoutSeconds === undefined ? NO_WORKFLOW_CALL_TIMEOUT_MS : `${deadlockTimeoutSeconds}s`;
}

/**
 * Tells the workflow threads created from now on whether to keep stack traces. They copy this thread's environment
 * when the SDK creates them (in Worker.create), so this must run before.
 */
export function setWorkflowStackTraces(enabled: boolean): void {
  process.env[STACK_TRACES_VARIABLE] = enabled ? 'on' : 'off';
}

function sdkFilesInclude(files: string[], marker: string): boolean {
  const require = createRequire(import.meta.url);
  return files.every((file) => readFileSync(require.resolve(`@temporalio/worker/${file}`), 'utf8').includes(marker));
}

/** Whether the installed SDK skips the watchdog thread for calls without a limit. */
export function watchdogPatchApplied(): boolean {
  return sdkFilesInclude(['lib/workflow/reusable-vm.js', 'lib/workflow/vm.js'], WATCHDOG_PATCH_MARKER);
}

/** Whether the installed SDK can run workflow code without its stack-trace promise hook. */
export function stackTracePatchApplied(): boolean {
  return sdkFilesInclude(['lib/workflow/vm-shared.js'], STACK_TRACE_PATCH_MARKER);
}
