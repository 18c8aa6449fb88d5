// The two calls the on-node signaler makes to Temporal, shared with tests and operator tooling so everything starts
// and signals rebalance workflows the same way. Both are idempotent: the workflow id is derived from the instance id.
import { type Client, WorkflowExecutionAlreadyStartedError, type WorkflowHandle } from '@temporalio/client';
import type { rebalanceWorkflow } from '../workflows/rebalance/workflow.js';
import { type InterruptionNotice, interruptionNoticeSignal, type RebalanceInput } from '../workflows/rebalance/api.js';
import { rebalanceWorkflowId } from '../workflows/shared/ids.js';
import { searchAttributes } from '../workflows/shared/search-attributes.js';

export interface RebalanceRequestResult {
  workflowId: string;
  /** The run serving this instance: the same for every repeated notice. Undefined when that run has finished. */
  runId?: string;
}

function startOptions(input: RebalanceInput, taskQueue: string) {
  return {
    workflowId: rebalanceWorkflowId(input.instanceId),
    taskQueue,
    args: [input] as [RebalanceInput],
    // One run per instance: a running one is reused, and a finished one is never started again for the same instance.
    workflowIdConflictPolicy: 'USE_EXISTING' as const,
    workflowIdReusePolicy: 'REJECT_DUPLICATE' as const,
    typedSearchAttributes: [
      { key: searchAttributes.instanceId, value: input.instanceId },
      { key: searchAttributes.node, value: input.nodeName },
    ],
  };
}

/** On a rebalance recommendation: start the instance's rebalance workflow unless it has one already. */
export async function requestRebalance(client: Client, taskQueue: string, input: RebalanceInput): Promise<RebalanceRequestResult> {
  const workflowId = rebalanceWorkflowId(input.instanceId);
  try {
    const handle = await client.workflow.start<typeof rebalanceWorkflow>('rebalanceWorkflow', startOptions(input, taskQueue));
    return { workflowId, runId: handle.firstExecutionRunId };
  } catch (error) {
    // REJECT_DUPLICATE: the instance's workflow has finished; the notice IMDS keeps serving changes nothing.
    if (error instanceof WorkflowExecutionAlreadyStartedError) return { workflowId };
    throw error;
  }
}

/**
 * On a spot interruption notice: tell the instance's workflow to drain now, starting it if there is none yet. Returns
 * undefined when the instance's workflow has already finished: its node was handled and nothing is left to signal.
 */
export async function reportInterruption(
  client: Client,
  taskQueue: string,
  input: RebalanceInput,
  notice: InterruptionNotice,
): Promise<WorkflowHandle<typeof rebalanceWorkflow> | undefined> {
  try {
    return await client.workflow.signalWithStart<typeof rebalanceWorkflow, [InterruptionNotice]>('rebalanceWorkflow', {
      ...startOptions(input, taskQueue),
      signal: interruptionNoticeSignal,
      signalArgs: [notice],
    });
  } catch (error) {
    if (error instanceof WorkflowExecutionAlreadyStartedError) return undefined;
    throw error;
  }
}
