// How long one call into workflow code may run. The SDK gives each call a timeout (its deadlock detection), and Node
// starts and joins a watchdog thread for every call that has one (nodejs/node#47739): in a wave of 500 that was most
// of the workflow thread's CPU. scripts/patch-temporal-worker.mjs (run by npm after install) makes a timeout at Node's
// maximum mean "none", so SPOT_GUARD_WORKFLOW_DEADLOCK_TIMEOUT=off costs no thread per call.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/** Node's largest vm timeout (about 49.7 days), which the SDK also uses in debug mode: the patch reads it as none. */
export const NO_WORKFLOW_CALL_TIMEOUT_MS = 4_294_967_295;

/** Written by scripts/patch-temporal-worker.mjs into the SDK's files it patched. */
export const WATCHDOG_PATCH_MARKER = '/* spot-guard: no watchdog thread without a limit */';

/** The SDK's isolateExecutionTimeout for a deadlock timeout in seconds, or for none. */
export function workflowCallTimeout(deadlockTimeoutSeconds: number | undefined): string | number {
  return deadlockTimeoutSeconds === undefined ? NO_WORKFLOW_CALL_TIMEOUT_MS : `${deadlockTimeoutSeconds}s`;
}

/** Whether the installed SDK skips the watchdog thread for calls without a limit. */
export function watchdogPatchApplied(): boolean {
  const require = createRequire(import.meta.url);
  return ['@temporalio/worker/lib/workflow/reusable-vm.js', '@temporalio/worker/lib/workflow/vm.js'].every((file) =>
    readFileSync(require.resolve(file), 'utf8').includes(WATCHDOG_PATCH_MARKER),
  );
}
