// The replacement a group launched on its own for a warned instance that left without a decrement, while desired still
// counts the +1 made for the warned one: one instance too many. It goes without a drain only while it has no
// Kubernetes node (so no pod); once it has one it is drained like any warned node before it goes, by a rebalance run of
// that instance in surplus mode (no spot +1: the capacity is there already).
import { log } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import type { RebalanceInput } from '../workflows/rebalance/api.js';
import type { rebalanceWorkflow } from '../workflows/rebalance/workflow.js';
import type { AutoScalingActivities, KubernetesActivities, SurplusActivities } from '../workflows/shared/activity-types.js';
import { rebalanceWorkflowId } from '../workflows/shared/ids.js';
import { searchAttributes } from '../workflows/shared/search-attributes.js';
import { workflowDetails, workflowSummaries } from '../workflows/shared/user-metadata.js';
import { requireGroupName, requireInstanceId, requireNodeName } from './validation.js';

export interface SurplusDependencies {
  temporal: Client;
  /** The queue of the per-node workflows (rebalance), not the per-group one the capacity workflow runs on. */
  taskQueue: string;
  autoScaling: Pick<AutoScalingActivities, 'terminateInstanceInGroup'>;
  kubernetes: Pick<KubernetesActivities, 'findNodeForInstance'>;
}

export function createSurplusActivities(deps: SurplusDependencies): SurplusActivities {
  return {
    /**
     * Every attempt looks at the nodes afresh right before the terminate call: a retry after a failed call (AWS
     * throttling, a 503) may come seconds later, when the instance has turned InService and its node carries pods.
     * A retry after a call that took effect but lost its answer may still see the node (deleted later by the cloud
     * controller): the drain then started is rejected at its verification (the instance is leaving), and the book
     * moved to the instance is settled by the next look as gone with a decrement, which was this call's.
     */
    async terminateUnlessNode({ asgName, instanceId }) {
      const { nodeName } = await deps.kubernetes.findNodeForInstance({ instanceId, fresh: true });
      if (nodeName !== undefined) {
        log.info('not terminated: the instance has a Kubernetes node, which may carry pods', { asgName, instanceId, nodeName });
        return { nodeName };
      }
      return deps.autoScaling.terminateInstanceInGroup({ asgName, instanceId, decrementDesiredCapacity: true });
    },

    /**
     * Started like the signaler starts a run, with the workflow id derived from the instance id: a run of it already
     * open is reused (a notice for the same instance then reaches the very run that drains it), so a repeated start
     * changes nothing.
     */
    async startSurplusDrain(input) {
      requireInstanceId(input.instanceId);
      requireNodeName(input.nodeName);
      requireInstanceId(input.surplusFor);
      requireGroupName(input.asgName);
      const args: [RebalanceInput] = [{ instanceId: input.instanceId, nodeName: input.nodeName, surplusFor: input.surplusFor }];
      const handle = await deps.temporal.workflow.start<typeof rebalanceWorkflow>('rebalanceWorkflow', {
        workflowId: rebalanceWorkflowId(input.instanceId),
        taskQueue: deps.taskQueue,
        args,
        workflowIdConflictPolicy: 'USE_EXISTING',
        workflowIdReusePolicy: 'ALLOW_DUPLICATE',
        staticSummary: workflowSummaries.rebalance(input, input.asgName),
        staticDetails: workflowDetails.rebalance('surplus', { surplusFor: input.surplusFor }),
        typedSearchAttributes: [
          { key: searchAttributes.instanceId, value: input.instanceId },
          { key: searchAttributes.node, value: input.nodeName },
        ],
      });
      return { workflowId: handle.workflowId };
    },
  };
}
