// How the benchmark warns a node under the naive strategy: the naive workflow, started as the signaler starts Spot
// Guard's rebalance workflow (signaler/workflow-requests.ts): the same workflow id and search attributes, one run per
// instance.
import type { Client } from '@temporalio/client';
import { type RebalanceInput } from '../../workflows/rebalance/api.js';
import { rebalanceWorkflowId } from '../../workflows/shared/ids.js';
import { searchAttributes } from '../../workflows/shared/search-attributes.js';
import type { naiveRebalanceWorkflow } from './workflow.js';

export async function startNaiveRebalance(client: Client, taskQueue: string, input: RebalanceInput): Promise<void> {
  await client.workflow.start<typeof naiveRebalanceWorkflow>('naiveRebalanceWorkflow', {
    workflowId: rebalanceWorkflowId(input.instanceId),
    taskQueue,
    args: [input],
    workflowIdConflictPolicy: 'USE_EXISTING',
    typedSearchAttributes: [
      { key: searchAttributes.instanceId, value: input.instanceId },
      { key: searchAttributes.node, value: input.nodeName },
    ],
  });
}
