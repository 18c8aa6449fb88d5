// Safety checks and scale-down, one on-demand node per cycle: is it safe to move its pods (each recreated elsewhere,
// no PodDisruptionBudget violated, room on the other nodes with a buffer)? Then taint, cordon, drain, wait for the
// pods to run elsewhere, and terminate that very instance with decrement through the on-demand group's capacity
// workflow. The scale-down under way is kept in state: a failure or restart resumes the same node, never another one.
import { ApplicationFailure, condition } from '@temporalio/workflow';
import { BELOW_MIN_SIZE, type RetirementAnswer } from '../capacity/api.js';
import type { PodOwner } from '../shared/activity-types.js';
import { announceReverted } from './announce.js';
import type { FlowSettings } from '../shared/settings.js';
import { checks } from './activities.js';
import { MAX_SCALE_DOWN_ATTEMPTS, type ScaleDownInFlight } from './api.js';
import { isoNow, type MonitorRun } from './run.js';
import { checkSpotHealth, updateHealthyStreak } from './stability.js';

/** The on-demand group's capacity workflow answers within minutes; this bound only matters if it was terminated. */
const TERMINATION_ANSWER_BACKSTOP_SECONDS = 15 * 60;

/**
 * How long a scale-down may be under way before it is given up and its node released, whatever holds it (steps that
 * keep failing, a termination never answered, a pause): the drains it may try (one per cycle), the wait for the moved
 * pods to run elsewhere, and the termination's answer. 2010 s (33.5 min) with the default settings.
 */
export function scaleDownTimeLimitSeconds(settings: FlowSettings): number {
  const { drainTimeoutSeconds, monitor } = settings;
  const drains = MAX_SCALE_DOWN_ATTEMPTS * (drainTimeoutSeconds + monitor.checkIntervalSeconds);
  return drains + monitor.podRescheduleTimeoutSeconds + TERMINATION_ANSWER_BACKSTOP_SECONDS;
}

function giveUpAt(run: MonitorRun, candidate: ScaleDownInFlight): string {
  return new Date(Date.parse(candidate.startedAt) + scaleDownTimeLimitSeconds(run.settings) * 1000).toISOString();
}

/** A scale-down past its time limit (one carried from before the limit existed counts from its start). */
export function pastTimeLimit(run: MonitorRun, inFlight: ScaleDownInFlight): boolean {
  return Date.now() >= Date.parse(inFlight.giveUpAt ?? giveUpAt(run, inFlight));
}

export async function scaleDown(run: MonitorRun, candidate: ScaleDownInFlight): Promise<void> {
  if (candidate.step === 'draining') {
    if (!(await safeToRemove(run, candidate))) {
      // Resumed (its node cordoned, partly drained) and unsafe now: the node is needed as it is, so it is given up.
      if (run.state.inFlight === candidate) await abandonScaleDown(run, candidate, `turned unsafe: ${run.state.lastSafety?.reason ?? ''}`, true);
      return;
    }
    // From here on the node is changed: remember it, so a failure resumes this node and never starts on another.
    run.state.inFlight = candidate;
    candidate.giveUpAt ??= giveUpAt(run, candidate);
    candidate.attempts++;
    run.publishPhase();
    if (candidate.nodeName && !(await drainOnDemandNode(run, candidate, candidate.nodeName))) return;
    candidate.step = 'awaiting-pods';
    run.showDetails();
  }
  if (run.state.paused) return; // paused between steps: resumed from here
  if (candidate.step === 'awaiting-pods') {
    if (!(await movedPodsRunElsewhere(run, candidate))) return;
    candidate.step = 'terminating';
    run.showDetails();
  }
  if (run.state.paused) return;
  if (!(await spotStillHealthy(run, candidate))) return;
  await terminateThatInstance(run, candidate);
}

/**
 * Spot's health once more right before the termination: the cycle's check may be minutes old (a drain, pods landing).
 * Spot turned unhealthy meanwhile: the on-demand node is needed again, so the scale-down is given up.
 */
async function spotStillHealthy(run: MonitorRun, candidate: ScaleDownInFlight): Promise<boolean> {
  const check = await checkSpotHealth(run);
  updateHealthyStreak(run.state, check, run.settings.monitor.checkIntervalSeconds);
  if (check.healthy) return true;
  await abandonScaleDown(run, candidate, `spot turned unhealthy right before the termination (${check.reasons.join('; ')})`, false);
  return false;
}

/** The safety checks; the verdict (and its reason) is kept for the status query. */
async function safeToRemove(run: MonitorRun, candidate: ScaleDownInFlight): Promise<boolean> {
  const { state, settings } = run;
  const { instanceId } = candidate;
  candidate.nodeName ??= (await checks.findNodeForInstance({ instanceId })).nodeName;
  const { nodeName } = candidate;
  const event = state.events.find((e) => e.onDemandInstanceId === instanceId);
  if (!nodeName && event && Date.now() - Date.parse(event.launchedAt) < settings.nodeReadyTimeoutSeconds * 1000) {
    // Not joined yet: it may be about to take pods. Only an instance that never joined in time counts as empty.
    state.lastSafety = { at: isoNow(), instanceId, safe: false, reason: `${instanceId} has no Kubernetes node yet` };
    return false;
  }
  if (!nodeName) {
    state.lastSafety = { at: isoNow(), instanceId, safe: true, reason: `${instanceId} has no Kubernetes node: nothing to move` };
    return true;
  }
  const safety = await checks.assessScaleDownSafety({ nodeName, bufferPercent: settings.monitor.capacityBufferPercent });
  state.lastSafety = { at: isoNow(), instanceId, nodeName, safe: safety.safe, reason: safety.reason };
  if (!safety.safe) {
    run.note(`not removing ${instanceId} (${nodeName}) yet: ${safety.reason}`);
    return false;
  }
  candidate.owners = mergeOwners(candidate.owners, safety.owners);
  return true;
}

/** Taint, cordon, drain (only pods a controller recreates); true when the node is empty. */
async function drainOnDemandNode(run: MonitorRun, candidate: ScaleDownInFlight, nodeName: string): Promise<boolean> {
  const { state, settings, steps } = run;
  run.note(`removing on-demand ${candidate.instanceId} (${nodeName}): ${state.lastSafety?.reason ?? ''}`);
  await steps.taintNode({ nodeName, taint: settings.monitor.scaleDownTaint });
  const cordon = await steps.cordonNode({ nodeName });
  // A resumed scale-down finds its own cordon: what counts is whether the node was cordoned before the first try.
  candidate.cordonedBySpotGuard ??= !cordon.alreadyCordoned;
  const deadline = new Date(Date.now() + settings.drainTimeoutSeconds * 1000).toISOString();
  const report = await steps.evictPods({ nodeName, deadline, onlyRecreatable: true });
  if (report.complete) return true;
  const left = [...report.remaining, ...report.left];
  const reason = `drain incomplete, ${left.length} pod(s) left: ${left.join(', ')}`;
  if (candidate.attempts >= MAX_SCALE_DOWN_ATTEMPTS) {
    await abandonScaleDown(run, candidate, reason, true);
    return false;
  }
  state.lastSafety = { at: isoNow(), instanceId: candidate.instanceId, nodeName, safe: false, reason };
  run.note(`drain of ${nodeName} incomplete; resumed next cycle`);
  return false;
}

/** The moved pods' controllers have all their pods running elsewhere (constraints the room check cannot see show here). */
async function movedPodsRunElsewhere(run: MonitorRun, candidate: ScaleDownInFlight): Promise<boolean> {
  const { settings, steps } = run;
  if (!candidate.nodeName || candidate.owners.length === 0) return true;
  const timeout = settings.monitor.podRescheduleTimeoutSeconds;
  const deadline = new Date(Date.now() + timeout * 1000).toISOString();
  const landed = await steps.awaitPodsRescheduled({ owners: candidate.owners, nodeName: candidate.nodeName, deadline, maxSeconds: timeout });
  if (landed.settled) return true;
  // Their pods cannot run elsewhere: the node is needed after all.
  await abandonScaleDown(run, candidate, `moved pods did not start elsewhere within ${timeout} s: ${landed.waitingFor.join(', ')}`, true);
  return false;
}

/** Terminate with decrement, that very instance; one that left the group another way changes nothing. */
async function terminateThatInstance(run: MonitorRun, candidate: ScaleDownInFlight): Promise<void> {
  const { state, steps, workflowId } = run;
  const { instanceId } = candidate;
  candidate.attempts++;
  const requestId = `${workflowId}/scale-down/${instanceId}/${candidate.attempts}`;
  await steps.requestInstanceRetirement({ asgName: run.onDemandAsgName, requestId, instanceId, terminate: true, ifAbsent: 'leave', replyTo: workflowId });
  const retired = await terminationAnswer(run, requestId);
  if (retired.status === 'failed') {
    if (retired.type !== BELOW_MIN_SIZE) throw ApplicationFailure.retryable(retired.message, 'CapacityRequestFailed');
    // MinSize reached since the pick (an operator, another tool): the node stays. It is picked again only once the
    // group is above its MinSize, and the attempt counts, so the same node is never tried for ever.
    return abandonScaleDown(run, candidate, `the on-demand group reached its MinSize before the termination: ${retired.message}`, true);
  }
  const event = state.events.find((e) => e.onDemandInstanceId === instanceId);
  if (event) {
    event.state = retired.status === 'not-in-group' ? 'gone' : 'removed';
    event.closedAt = isoNow();
  }
  state.inFlight = undefined;
  if (retired.status === 'not-in-group') {
    run.note(`on-demand ${instanceId} left the group before Spot Guard terminated it; nothing changed`);
    return;
  }
  state.scaleDowns++;
  run.note(`on-demand ${instanceId} removed (${retired.status}); ${state.scaleDowns} removed so far`);
  await announceReverted(run, candidate, event);
}

async function terminationAnswer(run: MonitorRun, requestId: string): Promise<RetirementAnswer> {
  await condition(() => run.retirementAnswers[requestId] !== undefined, TERMINATION_ANSWER_BACKSTOP_SECONDS * 1000);
  const answer = run.retirementAnswers[requestId];
  if (!answer) throw ApplicationFailure.retryable(`capacity workflow of "${run.onDemandAsgName}" did not answer ${requestId}`);
  return answer;
}

/**
 * Gives a scale-down up: its taint comes off, the node is made schedulable again if Spot Guard cordoned it (an operator's
 * cordon stays), and, when it failed, the event counts the attempt. It is kept in state as releasing until the release
 * went through: a release that fails is tried again next cycle, and nothing else is done meanwhile.
 */
export async function abandonScaleDown(run: MonitorRun, candidate: ScaleDownInFlight, reason: string, failed: boolean): Promise<void> {
  const { state } = run;
  const event = state.events.find((e) => e.onDemandInstanceId === candidate.instanceId);
  if (event && failed) event.failedAttempts = (event.failedAttempts ?? 0) + 1;
  if (event) event.lastGivenUp = `${isoNow()} ${reason}`;
  candidate.step = 'releasing';
  candidate.givenUp = reason;
  state.inFlight = candidate;
  state.lastSafety = { at: isoNow(), instanceId: candidate.instanceId, nodeName: candidate.nodeName, safe: false, reason };
  await releaseGivenUp(run, candidate);
}

/** Releases the node of a given-up scale-down; the scale-down is over once that went through. */
export async function releaseGivenUp(run: MonitorRun, candidate: ScaleDownInFlight): Promise<void> {
  const { state, settings, steps } = run;
  if (candidate.nodeName) {
    await steps.releaseNode({ nodeName: candidate.nodeName, taintKey: settings.monitor.scaleDownTaint.key, uncordon: candidate.cordonedBySpotGuard === true });
  }
  state.inFlight = undefined;
  run.note(`scale-down of ${candidate.instanceId} given up, its node released: ${candidate.givenUp ?? 'no reason recorded'}`);
}

function mergeOwners(a: PodOwner[], b: PodOwner[]): PodOwner[] {
  return [...new Map([...a, ...b].map((o) => [o.uid, o])).values()];
}
