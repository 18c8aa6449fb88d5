import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MockActivityEnvironment, TestWorkflowEnvironment } from '@temporalio/testing';
import type { LogLevel } from '@temporalio/common';
import { bundleWorkflowCode, DefaultLogger, Runtime, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { ensureSearchAttributes } from '../../worker/search-attributes.js';
import { startDevServerOnFreePorts } from '../../scripts/peers/dev-server.js';
import { temporalTestServerPath } from '../../scripts/peers/peers.js';

let runtimeInstalled = false;
const SEVERITY: Record<LogLevel, number> = { TRACE: 0, DEBUG: 1, INFO: 2, WARN: 3, ERROR: 4 };
const warningListeners = new Set<(message: string, meta: unknown) => void>();

/**
 * Keeps test output readable: the SDK logs errors only (LOG_LEVEL overrides). Warnings are still seen by the
 * listeners of `onSdkWarning`, printed or not.
 */
export function installQuietRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  const level = (process.env.LOG_LEVEL ?? 'ERROR').toUpperCase() as LogLevel;
  const printer = new DefaultLogger(level);
  const seen: LogLevel = SEVERITY[level] < SEVERITY.WARN ? level : 'WARN';
  const logger = new DefaultLogger(seen, (entry) => {
    if (SEVERITY[entry.level] >= SEVERITY.WARN) for (const listener of warningListeners) listener(entry.message, entry.meta);
    if (SEVERITY[entry.level] >= SEVERITY[level]) printer.log(entry.level, entry.message, entry.meta);
  });
  Runtime.install({
    logger,
    telemetryOptions: { logging: { filter: { core: seen, other: seen }, forward: {} } },
  });
}

/** Calls `listener` with every warning or error the SDK (core and workflows) logs from now on; returns the unsubscribe. */
export function onSdkWarning(listener: (message: string, meta: unknown) => void): () => void {
  warningListeners.add(listener);
  return () => warningListeners.delete(listener);
}

/**
 * A time-skipping test server, started in about 150 ms: suites start one per test. A test that ends with a workflow
 * terminated while its activity was in flight can leave the server's clock locked for good (measured: about one
 * suite run in four), and every later test on that server then waits its timers out in real time.
 */
export async function createTimeSkippingEnv(): Promise<TestWorkflowEnvironment> {
  installQuietRuntime();
  const env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: temporalTestServerPath() } },
  });
  await ensureSearchAttributes(env.connection, env.namespace ?? 'default');
  return env;
}

/**
 * The Temporal dev server (the real server, as the end-to-end tests run it), for a scenario that runs in real time
 * anyway and that the time-skipping test server cannot run: that server refuses a workflow task completion that
 * cancels a timer which came due while the task was in progress (the real server drops the buffered fire and records
 * TimerCanceled), and leaves the task started for good (no failure, no timeout, no redelivery): the workflow never
 * moves again (temporalio/sdk-java issues 2606 and 3088). Without time skipping, waits take their real time.
 */
export async function createDevServerEnv(): Promise<{ env: TestWorkflowEnvironment; teardown(): Promise<void> }> {
  installQuietRuntime();
  const dir = mkdtempSync(join(tmpdir(), 'spot-guard-books-'));
  const { server } = await startDevServerOnFreePorts(join(dir, 'temporal.sqlite'));
  const env = await TestWorkflowEnvironment.createFromExistingServer({ address: server.address });
  return {
    env,
    async teardown() {
      await env.teardown();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const workflowsPath = fileURLToPath(new URL('../../workflows/index.js', import.meta.url));

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;
/** The workflow bundle is built once per test process and shared by every worker. */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= bundleWorkflowCode({ workflowsPath, logger: new DefaultLogger('WARN') });
  return bundle;
}

/** An activity context for unit tests, logging at the test log level. */
/** `attempt`: which attempt of the activity this is (a retry sees what its earlier attempt did). */
export function activityEnvironment(attempt = 1): MockActivityEnvironment {
  return new MockActivityEnvironment({ attempt }, {
    logger: new DefaultLogger((process.env.LOG_LEVEL ?? 'ERROR').toUpperCase() as 'ERROR'),
  });
}
