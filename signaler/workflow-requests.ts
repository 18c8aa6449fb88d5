// The two calls the on-node signaler makes to Temporal, shared with tests and operator tooling so everything starts
// and signals rebalance workflows the same way. Both are idempotent: the workflow id is derived from the instance id.
import type { Client, WorkflowHandleWithSignaledRunId } from '@temporalio/client';
import type { rebalanceWorkflow } from '../workflows/rebalance/workflow.js';
import { type InterruptionNotice, interruptionNoticeSignal, type RebalanceInput } from '../workflows/rebalance/api.js';
import { rebalanceWorkflowId } from '../workflows/shared/ids.js';
import { searchAttributes } from '../workflows/shared/search-attributes.js';
import { workflowDetails, workflowSummaries } from '../workflows/shared/user-metadata.js';

export interface RebalanceRequestResult {
  workflowId: string;
  /** The run serving this instance: the same for every repeated notice while it is open. */
  runId: string;
}

/**
 * `notice`: the interruption notice that starts it (a rebalance recommendation without); `asgName`: the instance's
 * group, when the caller knows it, for the summary the UI shows (the workflow finds it on its own).
 */
function startOptions(input: RebalanceInput, taskQueue: string, notice?: InterruptionNotice, asgName?: string) {
  return {
    workflowId: rebalanceWorkflowId(input.instanceId),
    // What the Temporal UI shows of it (a run that is reused keeps those of its start).
    staticSummary: workflowSummaries.rebalance(input, asgName),
    staticDetails: notice ? workflowDetails.rebalance('interruption notice', notice) : workflowDetails.rebalance('rebalance recommendation', { time: input.noticeTime }),
    taskQueue,
    args: [input] as [RebalanceInput],
    // One open run per instance: a running one is reused. A notice for an instance whose run has closed (kept, rejected,
    // failed, terminated) starts a new run, which resumes the books its capacity workflow still holds for the instance
    // (the same request ids: no second +1).
    workflowIdConflictPolicy: 'USE_EXISTING' as const,
    workflowIdReusePolicy: 'ALLOW_DUPLICATE' as const,
    typedSearchAttributes: [
      { key: searchAttributes.instanceId, value: input.instanceId },
      { key: searchAttributes.node, value: input.nodeName },
    ],
  };
}

/** On a rebalance recommendation: start the instance's rebalance workflow unless one is open already. */
export async function requestRebalance(client: Client, taskQueue: string, input: RebalanceInput, asgName?: string): Promise<RebalanceRequestResult> {
  const handle = await client.workflow.start<typeof rebalanceWorkflow>('rebalanceWorkflow', startOptions(input, taskQueue, undefined, asgName));
  return { workflowId: handle.workflowId, runId: handle.firstExecutionRunId };
}

/**
 * On a spot interruption notice: tell the instance's open workflow to drain now, or start one that drains at once (a
 * closed run's instance is still running, so the notice always acts).
 */
export async function reportInterruption(
  client: Client,
  taskQueue: string,
  input: RebalanceInput,
  notice: InterruptionNotice,
  asgName?: string,
): Promise<WorkflowHandleWithSignaledRunId<typeof rebalanceWorkflow>> {
  return client.workflow.signalWithStart<typeof rebalanceWorkflow, [InterruptionNotice]>('rebalanceWorkflow', {
    ...startOptions(input, taskQueue, notice, asgName),
    signal: interruptionNoticeSignal,
    signalArgs: [notice],
  });
}
