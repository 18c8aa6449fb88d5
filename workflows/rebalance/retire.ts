// Keep the books: the spot group was raised by one for this instance, so once the instance is gone it must end at its
// original size. A drained instance is terminated with decrement (that very instance); one that is kept is watched
// until it leaves the group. The spot group's capacity workflow holds the books themselves ("raised by one for this
// instance") as long as the instance is in the group, so they are settled even after this run has ended.
import { ApplicationFailure, condition, sleep, workflowInfo } from '@temporalio/workflow';
import type { RetireInstanceRequest, RetireInstanceResult } from '../capacity/api.js';
import { rootMessage } from '../shared/failures.js';
import { releaseNode, requestInstanceRetirement } from './activities.js';
import type { InstanceFate } from './api.js';
import { ANSWER_BACKSTOP_MS } from './replacement.js';
import { isoNow, type RebalanceRun } from './run.js';
import { drain } from './taint-and-drain.js';

const MAX_RETIRE_ATTEMPTS = 20;
/** An incomplete drain is tried again this often while the instance stays (and at once on a notice). */
export const DRAIN_RETRY_MS = 10 * 60_000;

/** What became of the warned instance, once the drain is over (or the hold ended with `known`). */
export async function keepTheBooks(run: RebalanceRun, known: InstanceFate | undefined, drained: boolean): Promise<InstanceFate> {
  if (known) return known;
  if (run.status.replacement === 'not-requested') return 'kept'; // nothing was added for it: no books to keep
  if (run.status.replacement === 'not-needed') return 'not-in-group'; // it left before the +1: nothing was added for it
  // Whether the group was raised decides whether it must come down with the instance. A surplus instance carries a
  // +1 already, and no AWS reclaim is coming for it: drained, it goes.
  await condition(() => run.spotAnswered());
  const surplus = run.status.replacement === 'surplus';
  const decrement = surplus || run.status.spot.desiredTarget !== undefined;
  if (drained && (surplus || run.settings.terminateDrainedInstance)) {
    run.enterPhase('retiring-instance');
    return terminateWithDecrement(run, decrement);
  }
  run.enterPhase('awaiting-reclaim');
  if (drained) {
    const watched = await watchKeptInstance(run, () => false, decrement);
    return watched === 'drain-requested' ? 'kept' : watched;
  }
  run.note(`drain incomplete: tried again every ${DRAIN_RETRY_MS / 60_000} minutes and at once on an interruption notice or drainNow, while the instance stays`);
  return drainAgainUntilGone(run, decrement);
}

/**
 * After an incomplete drain (a PodDisruptionBudget that allowed nothing, say) the instance is watched, and the drain is
 * tried again every DRAIN_RETRY_MS, and at once when an interruption notice or drainNow arrives: AWS takes the node two
 * minutes after the notice, pods or not. Once a drain completes, the instance is retired as any drained one.
 */
async function drainAgainUntilGone(run: RebalanceRun, decrement: boolean): Promise<InstanceFate> {
  // Bounded as any kept instance's watch: then the run ends kept, its books stay with the capacity workflow.
  const giveUpAt = Date.now() + run.settings.reclaimWaitSeconds * 1000;
  for (let attempt = 2; ; attempt++) {
    const { interruption, drainRequest } = run.status;
    const retryAt = Date.now() + DRAIN_RETRY_MS;
    const newRequest = (): boolean => run.status.interruption !== interruption || run.status.drainRequest !== drainRequest;
    const watched = await watchKeptInstance(run, () => newRequest() || Date.now() >= retryAt, decrement, giveUpAt);
    if (watched !== 'drain-requested') return watched;
    const why = newRequest() && Date.now() < retryAt ? 'an interruption notice or drainNow arrived' : `${DRAIN_RETRY_MS / 60_000} minutes passed`;
    run.startDrainAttempt(attempt);
    run.note(`draining again (attempt ${attempt}): ${why}`);
    if (await drain(run)) return keepTheBooks(run, undefined, true);
    run.enterPhase('awaiting-reclaim');
  }
}

/** Terminate with decrement through the capacity workflow, trying again (with a new request id) on failure. */
async function terminateWithDecrement(run: RebalanceRun, decrement: boolean): Promise<InstanceFate> {
  const { workflowId, instanceId } = run;
  for (let attempt = 1; attempt <= MAX_RETIRE_ATTEMPTS; attempt++) {
    try {
      const requestId = attempt === 1 ? `${workflowId}/retire` : `${workflowId}/retire/${attempt}`;
      return fateOf(await askForRetirement(run, { requestId, instanceId, terminate: true, decrement }));
    } catch (error) {
      run.note(`could not retire ${instanceId} (attempt ${attempt}): ${rootMessage(error)}`);
      await sleep(Math.min(attempt * 30_000, 300_000));
    }
  }
  run.note(`gave up retiring ${instanceId} after ${MAX_RETIRE_ATTEMPTS} attempts: terminate it by hand`);
  return 'kept';
}

/**
 * Watches a kept instance (tainted, not terminated by us) until AWS takes it, `stop` holds, or the reclaim wait ends.
 * When AWS takes it, the capacity workflow lowers desired back by the one instance added for it.
 */
export async function watchKeptInstance(
  run: RebalanceRun,
  stop: () => boolean,
  decrement: boolean,
  deadline = Date.now() + run.settings.reclaimWaitSeconds * 1000,
): Promise<InstanceFate | 'drain-requested'> {
  const { settings, workflowId, instanceId } = run;
  // Looks are this run's own (a later run of the same instance must not be told what this one was).
  const looks = `${workflowId}/${workflowInfo().runId}/watch`;
  for (let look = 1; ; look++) {
    try {
      const answer = await askForRetirement(run, { requestId: `${looks}/${look}`, instanceId, terminate: false, decrement });
      if (answer.status !== 'still-running') return fateOf(answer);
    } catch (error) {
      run.note(`could not look whether ${instanceId} is still running: ${rootMessage(error)}`);
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      run.status.reclaimWaitEndedAt = isoNow();
      return 'kept';
    }
    if (await condition(stop, Math.min(settings.reclaimPollSeconds * 1000, left))) return 'drain-requested';
  }
}

function fateOf(answer: RetireInstanceResult): InstanceFate {
  return answer.status === 'still-running' ? 'kept' : answer.status;
}

/** Asks the spot group's capacity workflow to retire (or look at) this instance; the answer comes by signal. */
async function askForRetirement(run: RebalanceRun, request: Omit<RetireInstanceRequest, 'replyTo'>): Promise<RetireInstanceResult> {
  const asgName = run.settings.spotAsgName;
  await requestInstanceRetirement({ asgName, ...request, replyTo: run.workflowId });
  const { requestId } = request;
  await condition(() => run.retirementAnswers[requestId] !== undefined, ANSWER_BACKSTOP_MS);
  const answer = run.retirementAnswers[requestId];
  if (!answer) throw ApplicationFailure.retryable(`capacity workflow of "${asgName}" did not answer ${requestId} within ${ANSWER_BACKSTOP_MS / 1000} s`);
  if (answer.status === 'failed') throw ApplicationFailure.retryable(answer.message, 'CapacityRequestFailed');
  return answer;
}

/**
 * AWS did not take the instance within the reclaim wait: the run ends `kept` and gives the node back (its taint off,
 * uncordoned if this run cordoned it), so no node stays marked by Spot Guard without a run that owns it.
 * The books stay with the capacity workflow; a later notice starts a new run that taints and drains again.
 */
export async function releaseKeptNode(run: RebalanceRun): Promise<void> {
  const { nodeName } = run;
  try {
    const uncordon = run.status.cordonedBySpotGuard === true;
    await releaseNode({ nodeName, taintKey: run.settings.taint.key, uncordon });
    run.note(`not reclaimed within the reclaim wait: node ${nodeName} given back (untainted${uncordon ? ' and uncordoned' : ''}); a later notice starts over`);
  } catch (error) {
    run.note(`could not give node ${nodeName} back: ${rootMessage(error)}`);
  }
}
