// Activities through which a rebalance workflow asks a group's capacity workflow for a change. Workflows cannot send
// Updates to each other, so an activity does it with Update-with-Start: the capacity workflow is started on first use,
// and the request id doubles as the Update id, so a retried activity gets the first answer instead of a second change.
import { type Client, WithStartWorkflowOperation, WorkflowUpdateFailedError } from '@temporalio/client';
import {
  capacityWorkflowId,
  type DrainSlotAnswer,
  type DrainSlotRequest,
  drainSlotUpdate,
  type IncreaseCapacityRequest,
  type IncreaseCapacityResult,
  increaseCapacityUpdate,
  type RetireInstanceRequest,
  type RetireInstanceResult,
  retireInstanceUpdate,
  searchAttributes,
} from '../workflows/definitions.js';
import type { capacityWorkflow } from '../workflows/capacity.js';
import { FailureType, nonRetryable } from './errors.js';
import { requireGroupName } from './validation.js';

export function createCapacityRequestActivities(client: Client, taskQueue: string) {
  function capacityWorkflowFor(asgName: string): WithStartWorkflowOperation<typeof capacityWorkflow> {
    return new WithStartWorkflowOperation<typeof capacityWorkflow>('capacityWorkflow', {
      workflowId: capacityWorkflowId(asgName),
      taskQueue,
      args: [{ asgName }],
      workflowIdConflictPolicy: 'USE_EXISTING',
      typedSearchAttributes: [{ key: searchAttributes.asg, value: asgName }],
    });
  }

  async function send<Ret, Arg>(asgName: string, update: { name: string }, arg: Arg & { requestId: string }, updateId = arg.requestId): Promise<Ret> {
    requireGroupName(asgName);
    try {
      return await client.workflow.executeUpdateWithStart<typeof capacityWorkflow, Ret, [Arg]>(update.name, {
        updateId,
        args: [arg],
        startWorkflowOperation: capacityWorkflowFor(asgName),
      });
    } catch (error) {
      // The capacity workflow refused the request (validator or handler failure): the same request would fail again.
      if (error instanceof WorkflowUpdateFailedError) {
        throw nonRetryable(FailureType.invalidInput, `capacity workflow of "${asgName}" refused ${update.name}: ${error.cause?.message ?? error.message}`);
      }
      throw error;
    }
  }

  return {
    /** Asks for one more instance in the group; the answer carries the absolute target the capacity workflow applied. */
    async requestCapacityIncrease(input: IncreaseCapacityRequest & { asgName: string }): Promise<IncreaseCapacityResult> {
      const { asgName, ...request } = input;
      return send(asgName, increaseCapacityUpdate, request);
    },

    /** Asks the group's disruption budget for a drain slot: granted now, or queued and signalled when it is free. */
    async requestDrainSlot(input: DrainSlotRequest & { asgName: string }): Promise<DrainSlotAnswer> {
      const { asgName, ...request } = input;
      // Asking again about the same slot is a new Update (a repeated id would only replay the first answer).
      return send(asgName, drainSlotUpdate, request, request.ask ? `${request.requestId}/ask-${request.ask}` : request.requestId);
    },

    /** Terminates a drained instance with decrement, or settles the books once AWS has taken it. */
    async requestInstanceRetirement(input: RetireInstanceRequest & { asgName: string }): Promise<RetireInstanceResult> {
      const { asgName, ...request } = input;
      return send(asgName, retireInstanceUpdate, request);
    },
  };
}

export type CapacityRequestActivities = ReturnType<typeof createCapacityRequestActivities>;
