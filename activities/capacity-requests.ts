// Activities through which a rebalance workflow asks a group's capacity workflow for a change, and through which the
// capacity workflow answers. Requests with a waiting workflow go by Signal-with-Start (a wave sends hundreds, more than
// the Updates Temporal admits in flight) and are answered by signal; one-off requests go by Update-with-Start. Either
// way the capacity workflow is started on first use, and the request id makes a retried activity get the first answer
// instead of a second change.
import { Context } from '@temporalio/activity';
import type { SignalDefinition } from '@temporalio/common';
import { type Client, WithStartWorkflowOperation, WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import {
  ANSWER_SIGNAL_NAMES,
  capacityWorkflowId,
  type DrainSlotRequest,
  drainSlotRequestSignal,
  type IncreaseCapacityRequest,
  type IncreaseCapacityResult,
  increaseCapacityRequestSignal,
  increaseCapacityUpdate,
  releaseDrainSlotSignal,
  type RetireInstanceRequest,
  type RetireInstanceResult,
  retireInstanceRequestSignal,
  retireInstanceUpdate,
  searchAttributes,
  type WorkflowAnswer,
} from '../workflows/definitions.js';
import type { capacityWorkflow } from '../workflows/capacity.js';
import { FailureType, nonRetryable } from './errors.js';
import { requireGroupName, requireInstanceId } from './validation.js';

/** Signals in flight at once while answering a wave: the server's pace, not the worker's, sets the rate. */
const ANSWER_CONCURRENCY = 16;

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

  /** Signal-with-Start: a request that is answered by signal, with no cap on how many are in flight. */
  async function signalRequest<Arg>(asgName: string, signal: SignalDefinition<[Arg]>, request: Arg): Promise<void> {
    requireGroupName(asgName);
    await client.workflow.signalWithStart<typeof capacityWorkflow, [Arg]>('capacityWorkflow', {
      ...capacityWorkflowStart(asgName),
      signal,
      signalArgs: [request],
    });
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
      await signalRequest(asgName, increaseCapacityRequestSignal, request);
      return { status: 'queued' };
    },

    /**
     * Delivers a capacity workflow's answers to the workflows waiting for them, by signal, a few at a time. A workflow
     * that has ended is nobody left to tell; any other failure retries the batch (answers are idempotent by request id).
     */
    async sendAnswers(input: { answers: WorkflowAnswer[] }): Promise<{ delivered: number; gone: string[] }> {
      for (const { workflowId, signalName } of input.answers) {
        if (!ANSWER_SIGNAL_NAMES.includes(signalName)) {
          throw nonRetryable(FailureType.invalidInput, `signal "${signalName}" is not an answer signal (expected one of ${ANSWER_SIGNAL_NAMES.join(', ')})`);
        }
        if (typeof workflowId !== 'string' || workflowId.length === 0) {
          throw nonRetryable(FailureType.invalidInput, `workflowId "${String(workflowId)}" must name the workflow to answer`);
        }
      }
      // A retried attempt sends only what the previous ones did not deliver (their progress is in the heartbeat):
      // resending hundreds of answers to an overloaded server would add to its load.
      const [earlier] = (Context.current().info.heartbeatDetails as [number[]] | undefined) ?? [[]];
      const done = new Set<number>(earlier);
      const gone: string[] = [];
      let failure: unknown;
      const todo = input.answers.map((_, i) => i).filter((i) => !done.has(i));
      const sender = async (): Promise<void> => {
        for (let i = todo.shift(); i !== undefined; i = todo.shift()) {
          const { workflowId, signalName, answer } = input.answers[i] as WorkflowAnswer;
          try {
            await client.workflow.getHandle(workflowId).signal(signalName, answer);
            done.add(i);
          } catch (error) {
            if (error instanceof WorkflowNotFoundError) {
              gone.push(workflowId);
              done.add(i);
            } else failure ??= error;
          }
          Context.current().heartbeat([[...done]]);
        }
      };
      await Promise.all(Array.from({ length: Math.min(ANSWER_CONCURRENCY, todo.length) }, sender));
      if (failure) throw failure;
      return { delivered: done.size - gone.length, gone };
    },

    /**
     * Asks the group's disruption budget for a drain slot, by Signal-with-Start (no cap on requests in flight); the
     * capacity workflow answers the asking workflow by signal: granted, or queued with its position.
     */
    async requestDrainSlot(input: DrainSlotRequest & { asgName: string }): Promise<void> {
      const { asgName, ...request } = input;
      await signalRequest(asgName, drainSlotRequestSignal, request);
    },

    /**
     * Gives a drain slot back to the group's disruption budget. A plain signal, not Signal-with-Start: a capacity
     * workflow that is gone holds no slot, and starting one only to release would be a workflow for nothing.
     */
    async releaseDrainSlot(input: { asgName: string; requestId: string }): Promise<void> {
      requireGroupName(input.asgName);
      try {
        await client.workflow.getHandle(capacityWorkflowId(input.asgName)).signal(releaseDrainSlotSignal, { requestId: input.requestId });
      } catch (error) {
        if (error instanceof WorkflowNotFoundError) return;
        throw error;
      }
    },

    /**
     * Terminates a drained instance with decrement, or settles the books once AWS has taken it. With replyTo the request
     * goes by Signal-with-Start and the answer comes by signal (retirementAnswerSignal): answered 'queued' here.
     */
    async requestInstanceRetirement(input: RetireInstanceRequest & { asgName: string }): Promise<RetireInstanceResult | { status: 'queued' }> {
      const { asgName, ...request } = input;
      if (!request.replyTo) return send(asgName, retireInstanceUpdate, request);
      // A signal has no validator to refuse it: refuse bad input here, before anything is sent.
      requireInstanceId(request.instanceId);
      if (typeof request.terminate !== 'boolean') {
        throw nonRetryable(FailureType.invalidInput, `terminate "${String(request.terminate)}" must be true or false`);
      }
      await signalRequest(asgName, retireInstanceRequestSignal, request);
      return { status: 'queued' };
    },
  };
}

export type CapacityRequestActivities = ReturnType<typeof createCapacityRequestActivities>;
