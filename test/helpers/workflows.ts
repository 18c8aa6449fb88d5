import type { WorkflowHandle } from '@temporalio/client';
import { type RebalanceStatus, rebalanceStatusQuery } from '../../workflows/definitions.js';
import type { rebalanceWorkflow } from '../../workflows/rebalance.js';

/** The activity types a workflow scheduled, in history order: the runbook as the Temporal UI shows it. */
export async function activityNames(handle: WorkflowHandle): Promise<string[]> {
  const history = await handle.fetchHistory();
  return (history.events ?? [])
    .map((event) => event.activityTaskScheduledEventAttributes?.activityType?.name)
    .filter((name): name is string => typeof name === 'string');
}

/** Polls the status query (in real time) until the predicate holds. */
export async function waitForStatus(
  handle: WorkflowHandle<typeof rebalanceWorkflow>,
  predicate: (status: RebalanceStatus) => boolean,
  timeoutMs = 20_000,
): Promise<RebalanceStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: RebalanceStatus | undefined;
  for (;;) {
    try {
      last = await handle.query(rebalanceStatusQuery);
      if (predicate(last)) return last;
    } catch (error) {
      if (!/not found|no such|workflow not/i.test(String(error))) throw error;
    }
    if (Date.now() > deadline) throw new Error(`status never matched; last: ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
