// The 10 s group poll: while any workflow waits for a new instance of the group, one look per interval
// (DescribeAutoScalingGroups, plus DescribeScalingActivities for capacity errors) serves every waiter, however many.
// The group's Auto Scaling calls grow with the number of groups, not of warned nodes.
import { log } from '@temporalio/workflow';
import type { GroupProgress } from '../shared/activity-types.js';
import { rootMessage } from '../shared/failures.js';
import { describeGroupProgress } from './activities.js';
import { answerDrainSlot } from './drain-slots.js';
import type { ReplacementAnswer } from './api.js';
import type { GroupState } from './group-state.js';

export async function pollGroupForWaiters(state: GroupState): Promise<void> {
  const { asgName, waiters } = state;
  let progress: GroupProgress | undefined;
  try {
    progress = await describeGroupProgress(waiters.startPoll(asgName));
  } catch (error) {
    log.warn('could not look at the group this time', { asgName, error: rootMessage(error) });
  }
  const answers = waiters.settle(progress, Date.now(), (request) => answerDrainSlot(state, request));
  for (const { answer } of answers) rememberReplacement(state, answer as ReplacementAnswer);
  if (answers.length > 0) log.info('answered waiting workflows', { asgName, answers: answers.length, waiting: waiters.count, polls: waiters.waits.polls });
  await state.outbox.send(answers);
}

/** The answer is kept with its request (a new run of the same instance asks again), and its instance is nobody's replacement. */
function rememberReplacement(state: GroupState, answer: ReplacementAnswer): void {
  const record = state.ledger.completed[answer.requestId];
  if (record) record.replacement = answer;
  if (answer.status === 'in-service') state.books.ownArrival(answer.instanceId);
}
