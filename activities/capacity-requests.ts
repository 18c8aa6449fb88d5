// Activities through which a workflow asks a group's capacity workflow for a change, and through which the capacity
// workflow answers. Every request goes by Signal-with-Start (which starts the capacity workflow on first use, and is
// never capped the way Updates in flight are: a wave sends hundreds within seconds) after the request's one
// validation (workflows/capacity/api.ts), and is answered by signal. The request id makes a repeated request get its
// first answer instead of a second change.
import { Context } from '@temporalio/activity';
import type { SignalDefinition } from '@temporalio/common';
import { type Client, WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError } from '@temporalio/client';
import {
  ANSWER_SIGNAL_NAMES,
  drainSlotRequestSignal,
  increaseCapacityRequestSignal,
  releaseDrainSlotSignal,
  retireInstanceRequestSignal,
  validateDrainSlotRequest,
  validateIncreaseRequest,
  validateReleaseRequest,
  validateRetireRequest,
  type WorkflowAnswer,
} from '../workflows/capacity/api.js';
import type { capacityWorkflow } from '../workflows/capacity/workflow.js';
import type { CapacityRequestActivities } from '../workflows/shared/activity-types.js';
import { capacityWorkflowId } from '../workflows/shared/ids.js';
import { searchAttributes } from '../workflows/shared/search-attributes.js';
import { workflowDetails, workflowSummaries } from '../workflows/shared/user-metadata.js';
import { FailureType, nonRetryable } from './errors.js';
import { requireGroupName } from './validation.js';

/** Signals in flight at once while answering a wave: the server's pace, not the worker's, sets the rate. */
const ANSWER_CONCURRENCY = 16;

/** Runs a request's validation; a request that can never succeed fails at once, for good, naming the bad value. */
function validated<R>(validate: (request: R) => void, request: R, what: string): R {
  try {
    validate(request);
  } catch (error) {
    throw nonRetryable(FailureType.invalidInput, `${what} refused: ${(error as Error).message}`);
  }
  return request;
}

export function createCapacityRequestActivities(client: Client, taskQueue: string): CapacityRequestActivities {
  /** Signal-with-Start: the request reaches the group's capacity workflow, started if it does not run yet. */
  async function signalRequest<Arg>(asgName: string, signal: SignalDefinition<[Arg]>, request: Arg): Promise<void> {
    requireGroupName(asgName);
    const options = { workflowId: capacityWorkflowId(asgName), taskQueue, args: [{ asgName }] as [{ asgName: string }], signal, signalArgs: [request] as [Arg] };
    const shown = { staticSummary: workflowSummaries.capacity(asgName), staticDetails: workflowDetails.capacity(asgName) };
    for (let attempt = 1; ; attempt++) {
      try {
        await client.workflow.signalWithStart<typeof capacityWorkflow, [Arg]>('capacityWorkflow', { ...options, ...shown, typedSearchAttributes: [{ key: searchAttributes.asg, value: asgName }] });
        return;
      } catch (error) {
        // Another request started it a moment before (a server that does not make the two one step): signal again.
        if (!(error instanceof WorkflowExecutionAlreadyStartedError) || attempt >= 3) throw error;
      }
    }
  }

  return {
    /** Spot +1 (or on-demand +1): the grant comes by capacityAnswer, the new instance by replacementAnswer. */
    async requestCapacityIncrease({ asgName, ...request }) {
      await signalRequest(asgName, increaseCapacityRequestSignal, validated(validateIncreaseRequest, request, 'increase request'));
    },

    /** Terminate with decrement, or settle the books once AWS has taken the instance: answered by retirementAnswer. */
    async requestInstanceRetirement({ asgName, ...request }) {
      await signalRequest(asgName, retireInstanceRequestSignal, validated(validateRetireRequest, request, 'retirement request'));
    },

    /** A slot of the group's disruption budget: answered by drainSlotAnswer, granted or queued with its position. */
    async requestDrainSlot({ asgName, ...request }) {
      await signalRequest(asgName, drainSlotRequestSignal, validated(validateDrainSlotRequest, request, 'drain slot request'));
    },

    /**
     * Gives a drain slot back. A plain signal, not Signal-with-Start: a capacity workflow that is gone holds no slot,
     * and starting one only to release would be a workflow for nothing.
     */
    async releaseDrainSlot({ asgName, ...request }) {
      requireGroupName(asgName);
      try {
        await client.workflow.getHandle(capacityWorkflowId(asgName)).signal(releaseDrainSlotSignal, validated(validateReleaseRequest, request, 'drain slot release'));
      } catch (error) {
        if (error instanceof WorkflowNotFoundError) return;
        throw error;
      }
    },

    sendAnswers: (input) => sendAnswers(client, input),
  };
}

/**
 * Delivers a capacity workflow's answers to the workflows waiting for them, by signal, a few at a time. A workflow that
 * has ended is nobody left to tell; any other failure retries the batch (answers are idempotent by request id), and a
 * retried attempt sends only what the previous ones did not deliver (their progress is in the heartbeat).
 */
async function sendAnswers(client: Client, input: { answers: WorkflowAnswer[] }): Promise<{ delivered: number; gone: string[] }> {
  for (const { workflowId, signalName } of input.answers) {
    if (!ANSWER_SIGNAL_NAMES.includes(signalName)) {
      throw nonRetryable(FailureType.invalidInput, `signal "${signalName}" is not an answer signal (expected one of ${ANSWER_SIGNAL_NAMES.join(', ')})`);
    }
    if (typeof workflowId !== 'string' || workflowId.length === 0) {
      throw nonRetryable(FailureType.invalidInput, `workflowId "${String(workflowId)}" must name the workflow to answer`);
    }
  }
  const [earlier] = (Context.current().info.heartbeatDetails as [number[]] | undefined) ?? [[]];
  const done = new Set<number>(earlier);
  const gone: string[] = [];
  let failure: Error | undefined;
  const todo = input.answers.map((_, i) => i).filter((i) => !done.has(i));
  const sender = async (): Promise<void> => {
    for (let i = todo.shift(); i !== undefined; i = todo.shift()) {
      const { workflowId, signalName, answer } = input.answers[i];
      try {
        await client.workflow.getHandle(workflowId).signal(signalName, answer);
        done.add(i);
      } catch (error) {
        if (error instanceof WorkflowNotFoundError) {
          gone.push(workflowId);
          done.add(i);
        } else failure ??= error instanceof Error ? error : new Error(String(error));
      }
      Context.current().heartbeat([[...done]]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(ANSWER_CONCURRENCY, todo.length) }, sender));
  if (failure) throw failure;
  return { delivered: done.size - gone.length, gone };
}
