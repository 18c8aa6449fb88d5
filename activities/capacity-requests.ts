// Activities through which a rebalance workflow asks a group's capacity workflow for a change. Workflows cannot send
// Updates to each other, so an activity does it with Update-with-Start: the capacity workflow is started on first use,
// and the request id doubles as the Update id, so a retried activity gets the first answer instead of a second change.
import { type Client, WithStartWorkflowOperation, WorkflowUpdateFailedError } from '@temporalio/client';
import {
  capacityWorkflowId,
  type DrainSlotRequest,
  drainSlotRequestSignal,
  type IncreaseCapacityRequest,
  type IncreaseCapacityResult,
  increaseCapacityRequestSignal,
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

  function capacityWorkflowStart(asgName: string) {
    return {
      workflowId: capacityWorkflowId(asgName),
      taskQueue,
      args: [{ asgName }] as [{ asgName: string }],
      typedSearchAttributes: [{ key: searchAttributes.asg, value: asgName }],
    };
  }

  async function send<Ret, Arg>(asgName: string, update: { name: string }, arg: Arg & { requestId: string }): Promise<Ret> {
    requireGroupName(asgName);
    try {
      return await client.workflow.executeUpdateWithStart<typeof capacityWorkflow, Ret, [Arg]>(update.name, {
        updateId: arg.requestId,
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
      if (!request.waiter) return send(asgName, increaseCapacityUpdate, request);
      // A waiter is answered by signal, so the request goes by signal too: Temporal admits only a few Updates in
      // flight per workflow, and a wave sends hundreds of requests within seconds.
      requireGroupName(asgName);
      await client.workflow.signalWithStart<typeof capacityWorkflow, [IncreaseCapacityRequest]>('capacityWorkflow', {
        ...capacityWorkflowStart(asgName),
        signal: increaseCapacityRequestSignal,
        signalArgs: [request],
      });
      return { status: 'queued' };
    },

    /**
     * Asks the group's disruption budget for a drain slot, by Signal-with-Start (no cap on requests in flight); the
     * capacity workflow answers the asking workflow by signal: granted, or queued with its position.
     */
    async requestDrainSlot(input: DrainSlotRequest & { asgName: string }): Promise<void> {
      const { asgName, ...request } = input;
      requireGroupName(asgName);
      await client.workflow.signalWithStart<typeof capacityWorkflow, [DrainSlotRequest]>('capacityWorkflow', {
        ...capacityWorkflowStart(asgName),
        signal: drainSlotRequestSignal,
        signalArgs: [request],
      });
    },

    /** Terminates a drained instance with decrement, or settles the books once AWS has taken it. */
    async requestInstanceRetirement(input: RetireInstanceRequest & { asgName: string }): Promise<RetireInstanceResult> {
      const { asgName, ...request } = input;
      return send(asgName, retireInstanceUpdate, request);
    },
  };
}

export type CapacityRequestActivities = ReturnType<typeof createCapacityRequestActivities>;
