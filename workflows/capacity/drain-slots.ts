// The disruption budget's side of the loop: answering drain slot requests (reading the group's size first when it is
// not known yet) and moving the queue up as slots are released or their leases run out.
import { log } from '@temporalio/workflow';
import { rootMessage } from '../shared/failures.js';
import { type DrainSlotAnswer, drainSlotAnswerSignal, type DrainSlotRequest, type WorkflowAnswer } from './api.js';
import type { GroupState } from './group-state.js';

/** The answer to one request, logged when the budget queues it. */
export function answerDrainSlot(state: GroupState, request: DrainSlotRequest): DrainSlotAnswer | undefined {
  const answer = state.drains.answer(request, state.groupSize(), Date.now());
  if (answer?.status === 'queued') {
    const { draining } = state.drains.queue;
    log.info('drain queued by the disruption budget', { asgName: state.asgName, instanceId: request.instanceId, position: answer.position, draining: draining.length, limit: answer.limit });
  }
  return answer;
}

export async function answerDrainRequests(state: GroupState): Promise<void> {
  if (!state.groupSizeKnown()) {
    try {
      await state.lookAtGroup();
    } catch (error) {
      log.warn('could not read the group size for the disruption budget; counting it as 0 (budget of 1)', { asgName: state.asgName, error: rootMessage(error) });
    }
  }
  const answers: WorkflowAnswer[] = [];
  for (const request of state.drains.incoming.splice(0, state.drains.incoming.length)) {
    const answer = answerDrainSlot(state, request);
    if (answer) answers.push({ workflowId: request.workflowId, signalName: drainSlotAnswerSignal.name, answer });
  }
  await state.outbox.send(answers);
}

/** Frees slots whose holder never released them, then lets the queue move up in order. */
export async function moveDrainQueue(state: GroupState): Promise<void> {
  for (const holder of state.drains.expireLeases(Date.now())) log.warn('drain slot lease expired without a release', { asgName: state.asgName, ...holder });
  const granted = state.drains.promote(state.groupSize(), Date.now());
  await state.outbox.send(
    granted.map((g) => ({ workflowId: g.workflowId, signalName: drainSlotAnswerSignal.name, answer: { requestId: g.requestId, status: 'granted' as const } })),
  );
}
