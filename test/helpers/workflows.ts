import type { WorkflowHandle } from '@temporalio/client';
import { type RebalanceStatus, rebalanceStatusQuery } from '../../workflows/rebalance/api.js';
import type { rebalanceWorkflow } from '../../workflows/rebalance/workflow.js';

/**
 * The activity types a workflow ran, in history order, local activities (recorded as markers) included: the runbook as
 * the Temporal UI shows it.
 */
export async function activityNames(handle: WorkflowHandle, { localToo = true } = {}): Promise<string[]> {
  const history = await handle.fetchHistory();
  return (history.events ?? [])
    .map(
      (event) =>
        event.activityTaskScheduledEventAttributes?.activityType?.name ??
        (localToo ? localActivityType(event.markerRecordedEventAttributes) : undefined),
    )
    .filter((name): name is string => typeof name === 'string');
}

type MarkerAttributes = { markerName?: string | null; details?: Record<string, { payloads?: { data?: Uint8Array | null }[] | null }> | null };

function localActivityType(marker: MarkerAttributes | null | undefined): string | undefined {
  if (marker?.markerName !== 'core_local_activity') return undefined;
  const data = marker.details?.data?.payloads?.[0]?.data;
  if (!data) return undefined;
  const parsed = JSON.parse(Buffer.from(data).toString('utf8')) as { activity_type?: string };
  return parsed.activity_type;
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
