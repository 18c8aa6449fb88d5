// The 10 s group poll: while any workflow waits for a new instance of the group, one look per interval
// (DescribeAutoScalingGroups, plus DescribeScalingActivities for capacity errors) serves every waiter, however many.
// The group's Auto Scaling calls grow with the number of groups, not of warned nodes.
import { log } from '@temporalio/workflow';
import type { GroupProgress } from '../shared/activity-types.js';
import { rootMessage } from '../shared/failures.js';
import { describeGroupProgress, reportFallbackToMonitor, setDesiredCapacity } from './activities.js';
import { answerDrainSlot } from './drain-slots.js';
import { countPoll } from './metrics.js';
import { LATE_SUFFIX, type ReplacementAnswer, type WorkflowAnswer } from './api.js';
import type { GroupState } from './group-state.js';

export async function pollGroupForWaiters(state: GroupState): Promise<void> {
  const { asgName, waiters } = state;
  let progress: GroupProgress | undefined;
  try {
    progress = await describeGroupProgress(countPoll(state, waiters.startPoll(asgName)));
  } catch (error) {
    log.warn('could not look at the group this time', { asgName, error: rootMessage(error) });
  }
  const answers = waiters.settle(progress, Date.now(), (request) => answerDrainSlot(state, request));
  await reportLateFallbacks(state);
  if (progress) await giveBackLapsedFallbacks(state, progress);
  if (answers.length > 0) log.info('answered waiting workflows', { asgName, answers: answers.length, waiting: waiters.count, polls: waiters.waits.polls });
  await sendReplacementAnswers(state, answers);
}

/** Answers about replacements, remembered with their requests, then on their way. */
export async function sendReplacementAnswers(state: GroupState, answers: WorkflowAnswer[]): Promise<void> {
  for (const { answer } of answers) {
    const told = answer as ReplacementAnswer;
    rememberReplacement(state, told);
    if (told.status === 'withdrawn') log.warn('a waiter was withdrawn: its +1 was taken back by someone else', { asgName: state.asgName, requestId: told.requestId, reason: told.reason });
  }
  await state.outbox.send(answers);
}

/** The answer is kept with its request (a new run of the same instance asks again), and its instance is nobody's replacement. */
function rememberReplacement(state: GroupState, answer: ReplacementAnswer): void {
  const late = answer.requestId.endsWith(LATE_SUFFIX);
  const record = state.ledger.completed[late ? answer.requestId.slice(0, -LATE_SUFFIX.length) : answer.requestId];
  if (record && late) record.lateReplacement = answer;
  else if (record) record.replacement = answer;
  if (answer.status === 'in-service') state.books.ownArrival(answer.instanceId);
}

/** A late on-demand instance is a fallback like any other: its pair's monitor removes it once spot is healthy. */
async function reportLateFallbacks(state: GroupState): Promise<void> {
  for (const late of state.waiters.lateFallbacks.splice(0)) {
    const { spotAsgName, warnedInstanceId, warnedNodeName } = late.fallbackFor;
    try {
      await reportFallbackToMonitor({
        spotAsgName,
        onDemandAsgName: state.asgName,
        report: { onDemandInstanceId: late.instanceId, warnedInstanceId, warnedNodeName, launchedAt: late.at },
      });
      log.info('a late on-demand fallback was reported to its monitor', { asgName: state.asgName, instanceId: late.instanceId, warnedInstanceId });
    } catch (error) {
      log.error('could not report a late on-demand fallback to its monitor: remove it by hand once spot is back', { asgName: state.asgName, instanceId: late.instanceId, error: rootMessage(error) });
    }
  }
}

/**
 * An on-demand fallback whose late watch ended with nothing launched gives its +1 back, but only while fewer instances
 * are live than desired: lowering desired then takes no instance, it only drops a launch that never came.
 */
async function giveBackLapsedFallbacks(state: GroupState, progress: GroupProgress): Promise<void> {
  const lapsed = state.waiters.lapsedFallbacks;
  if (lapsed === 0) return;
  state.waiters.lapsedFallbacks = 0;
  // Launches the current waiters still wait for are not given back: lowering desired would drop those.
  const live = progress.inService.length + progress.launching.length + state.waiters.unlaunchedClaims(progress);
  const giveBack = Math.min(lapsed, progress.desiredCapacity - live);
  if (giveBack < lapsed) log.warn('an on-demand fallback that never launched in time could not be given back: the group is at its desired capacity', { asgName: state.asgName, lapsed, giveBack });
  if (giveBack <= 0) return;
  const desiredCapacity = progress.desiredCapacity - giveBack;
  await setDesiredCapacity({ asgName: state.asgName, desiredCapacity, from: progress.desiredCapacity }).then(
    ({ dryRun, desiredCapacity: left }) => {
      if (dryRun || left !== desiredCapacity) return;
      state.appliedChanges++;
      state.books.ownDesired(desiredCapacity);
      log.info('on-demand fallback increases that never launched were given back', { asgName: state.asgName, desiredCapacity });
    },
    (error: unknown) => log.error('could not give back an on-demand fallback increase', { asgName: state.asgName, error: rootMessage(error) }),
  );
}
