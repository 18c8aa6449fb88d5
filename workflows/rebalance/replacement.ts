// Replacement capacity first: spot +1 through the spot group's capacity workflow, which polls the group every 10 s for
// all its waiters and tells this run which new instance is its own; on a capacity error, MaxSize or the timeout, the
// on-demand fallback +1 the same way; then wait for the replacement's Kubernetes node to be Ready (InService is not
// Ready). Runs beside the taint and drain, so an interruption notice never waits for it.
import { condition, upsertSearchAttributes } from '@temporalio/workflow';
import type { CapacityAnswer, IncreaseGrant } from '../capacity/api.js';
import type { NodeLook } from '../shared/activity-types.js';
import { rootMessage } from '../shared/failures.js';
import { searchAttributes } from '../shared/search-attributes.js';
import { awaitNodeReadyFor, NODE_READY_QUICK_LOOK_MS, quickNodeReadyLook, reportFallbackToMonitor, requestCapacityIncrease } from './activities.js';
import type { ScaleAttempt } from './api.js';
import { announceStep, noticeKind, secondsSinceNotice } from './announce.js';
import { drainSlotRequest } from './taint-and-drain.js';
import type { RebalanceRun } from './run.js';

/**
 * The capacity workflow applies a request within its window plus a few AWS calls; retried calls may take minutes, and
 * it answers a failure after 10. This bound only matters if it was terminated by hand.
 */
export const ANSWER_BACKSTOP_MS = 15 * 60_000;

export async function addReplacementCapacity(run: RebalanceRun): Promise<void> {
  const { settings, status } = run;
  if (run.surplusFor) {
    status.replacement = 'surplus';
    run.note(`surplus: the group launched this instance on its own for ${run.surplusFor}, whose +1 it now carries; no +1, drained and terminated with decrement`);
    upsertSearchAttributes([{ key: searchAttributes.outcome, value: 'surplus' }]);
    run.enterCapacityPhase('done');
    return;
  }
  if (!settings.addReplacementCapacity) {
    status.replacement = 'not-requested';
    run.note('Spot Guard is disabled (ENABLE_SPOT_GUARD=false): no replacement capacity, taint and drain only');
    run.enterCapacityPhase('done');
    return;
  }
  const spot = await spotPlusOne(run);
  if (spot) settleReplacement(run, 'spot', spot);
  else if (status.replacement !== 'not-needed' && status.replacement !== 'surplus') await onDemandFallback(run);
  upsertSearchAttributes([{ key: searchAttributes.outcome, value: status.replacement ?? 'capacity-unavailable' }]);
  if (status.replacementInstanceId) await awaitReplacementNodeReady(run, status.replacementInstanceId);
  await announceOutcome(run, false);
  run.enterCapacityPhase('done');
}

/** Spot +1: the spot group's answer about the replacement also carries this node's drain slot. */
function spotPlusOne(run: RebalanceRun): Promise<string | undefined> {
  return raiseAndAwaitNewInstance(run, run.status.spot, 'spot', run.settings.capacityCheckTimeoutSeconds);
}

/** On-demand fallback: +1 on the on-demand group, the same wait; the monitor is told which instance to remove later. */
async function onDemandFallback(run: RebalanceRun): Promise<void> {
  const { settings, status } = run;
  run.note(`spot capacity unavailable (${status.spot.failure}); falling back to on-demand group ${settings.onDemandAsgName}`);
  await announceStep(run, 'on-demand-fallback', `spot capacity unavailable (${status.spot.failure}): falling back to on-demand group "${settings.onDemandAsgName}"`, { kind: 'on-demand', reason: status.spot.failure });
  const attempt: ScaleAttempt = { asgName: settings.onDemandAsgName };
  status.onDemand = attempt;
  const onDemand = await raiseAndAwaitNewInstance(run, attempt, 'on-demand', settings.scaleTimeoutSeconds);
  if (!onDemand) {
    status.replacement = 'capacity-unavailable';
    run.note(`on-demand capacity unavailable too (${attempt.failure})`);
    return;
  }
  settleReplacement(run, 'on-demand', onDemand);
  await reportFallbackToMonitor({
    spotAsgName: settings.spotAsgName,
    onDemandAsgName: settings.onDemandAsgName,
    report: { onDemandInstanceId: onDemand, warnedInstanceId: run.instanceId, warnedNodeName: run.nodeName, launchedAt: attempt.inServiceAt ?? new Date().toISOString() },
  });
}

/**
 * A replacement that came after its wait ended ends a hold: it is this node's replacement after all, so the node is
 * drained. (An on-demand one was reported to the monitor by its capacity workflow.)
 */
export async function useLateReplacement(run: RebalanceRun, late: { kind: 'spot' | 'on-demand'; instanceId: string }): Promise<void> {
  settleReplacement(run, late.kind, late.instanceId);
  run.note(`the ${late.kind} replacement came after its wait ended: the hold ends`);
  upsertSearchAttributes([{ key: searchAttributes.outcome, value: late.kind }]);
  await awaitReplacementNodeReady(run, late.instanceId);
  await announceOutcome(run, true);
}

/** Replacement ready (on the warned node and the replacement's), or no capacity at all; nothing when none was needed. */
async function announceOutcome(run: RebalanceRun, late: boolean): Promise<void> {
  const { status } = run;
  const kind = status.replacement;
  if (kind === 'spot' || kind === 'on-demand') {
    const node = status.replacementNodeName;
    await announceStep(
      run,
      'replacement-ready',
      `${kind} replacement ${status.replacementInstanceId ?? ''}${node ? ` (node ${node})` : ''} is ready for ${run.instanceId} (${run.nodeName})`,
      { notice: noticeKind(run), kind, outcome: kind, replacementInstanceId: status.replacementInstanceId, replacementNodeName: node, seconds: secondsSinceNotice(run), late },
      node ? { otherNodeName: node } : {},
    );
  } else if (kind === 'capacity-unavailable') {
    const reason = status.onDemand?.failure ?? status.spot.failure;
    await announceStep(run, 'no-capacity', `no replacement capacity for ${run.instanceId}: ${reason ?? 'unknown'}`, { notice: noticeKind(run), outcome: kind, reason, capacityGroup: status.onDemand?.asgName ?? run.settings.spotAsgName });
  }
}

function settleReplacement(run: RebalanceRun, kind: 'spot' | 'on-demand', replacementInstanceId: string): void {
  run.status.replacement = kind;
  run.status.replacementInstanceId = replacementInstanceId;
  run.note(`${kind} replacement ${replacementInstanceId} is InService`);
}

/** +1 on the attempt's group, then wait until a new instance is InService, a capacity problem shows, or time runs out. */
async function raiseAndAwaitNewInstance(run: RebalanceRun, attempt: ScaleAttempt, label: 'spot' | 'on-demand', timeoutSeconds: number): Promise<string | undefined> {
  run.enterCapacityPhase(label === 'spot' ? 'scaling-spot' : 'scaling-on-demand');
  const requestId = `${run.workflowId}/${label}`;
  const grant = await askForIncrease(run, attempt, requestId, timeoutSeconds, label === 'spot');
  if (!grant) return undefined;
  if (grant.status === 'surplus') {
    run.status.replacement = 'surplus';
    run.note(`${run.instanceId} is itself a surplus of ${attempt.asgName} (launched on its own for an instance that left, whose +1 it carries): no +1, drained and terminated with decrement`);
    return undefined;
  }
  if (grant.status === 'warned-instance-gone') {
    run.status.replacement = 'not-needed';
    run.note(`${run.instanceId} left ${attempt.asgName} before the +1: no replacement asked for it (the group replaces it, or it was removed on purpose)`);
    return undefined;
  }
  if (grant.status === 'at-max-size') {
    attempt.failure = `group is at its MaxSize (${grant.maxSize})`;
    return undefined;
  }
  attempt.requestedAt = grant.appliedAt;
  attempt.desiredBefore = grant.desiredBefore;
  attempt.desiredTarget = grant.desiredTarget;
  await announceStep(run, 'replacement-requested', `${label} +1 on "${attempt.asgName}" (desired ${grant.desiredBefore} -> ${grant.desiredTarget}) for ${run.instanceId}`, { kind: label, desiredTarget: grant.desiredTarget, capacityGroup: attempt.asgName });
  run.enterCapacityPhase(label === 'spot' ? 'waiting-for-spot' : 'waiting-for-on-demand');
  return awaitNewInstance(run, attempt, requestId, timeoutSeconds);
}

/** Asks the group's capacity workflow for one more instance; its grant (or refusal) comes by signal. */
async function askForIncrease(run: RebalanceRun, attempt: ScaleAttempt, requestId: string, waitSeconds: number, withDrainSlot: boolean): Promise<IncreaseGrant | undefined> {
  const { settings } = run;
  // The spot group keeps the disruption budget: its answer about the replacement can carry the drain slot, which saves
  // a request, an answer and a workflow task per node in a wave.
  run.drainSlotAskedWithReplacement = withDrainSlot;
  try {
    await requestCapacityIncrease({
      asgName: attempt.asgName,
      requestId,
      ...(withDrainSlot ? { forInstanceId: run.instanceId } : {}),
      coalesceSeconds: settings.coalesceWindowSeconds,
      waiter: {
        workflowId: run.workflowId,
        waitSeconds,
        pollIntervalSeconds: settings.asgPollIntervalSeconds,
        // The spot group's answer carries the drain slot; an on-demand instance that comes late goes to the monitor.
        ...(withDrainSlot ? { drainSlot: drainSlotRequest(run, false) } : { fallbackFor: { spotAsgName: settings.spotAsgName, warnedInstanceId: run.instanceId, warnedNodeName: run.nodeName } }),
      },
    });
  } catch (error) {
    attempt.failure = `could not raise the desired capacity: ${rootMessage(error)}`;
    return undefined;
  }
  await condition(() => run.capacityAnswers[requestId] !== undefined, ANSWER_BACKSTOP_MS);
  const answer: CapacityAnswer | undefined = run.capacityAnswers[requestId];
  if (!answer) attempt.failure = `capacity workflow of "${attempt.asgName}" did not apply the increase within ${ANSWER_BACKSTOP_MS / 1000} s`;
  else if (answer.status === 'failed') attempt.failure = `could not raise the desired capacity: ${answer.message}`;
  else return answer;
  return undefined;
}

/** The capacity workflow answers by the deadline: its instance, a capacity problem, or the end of the wait. */
async function awaitNewInstance(run: RebalanceRun, attempt: ScaleAttempt, requestId: string, timeoutSeconds: number): Promise<string | undefined> {
  // This bound only matters if the capacity workflow was terminated by hand.
  const backstopSeconds = timeoutSeconds + 2 * run.settings.asgPollIntervalSeconds + 60;
  await condition(() => run.replacementAnswers[requestId] !== undefined, backstopSeconds * 1000);
  const answer = run.replacementAnswers[requestId];
  attempt.polls = answer?.polls;
  switch (answer?.status) {
    case 'in-service':
      attempt.instanceId = answer.instanceId;
      attempt.inServiceAt = answer.at;
      if (answer.drainSlot) run.takeDrainSlotAnswer(answer.drainSlot);
      return answer.instanceId;
    case 'capacity-problem':
      attempt.failure = `capacity problem: ${answer.message}`;
      return undefined;
    case 'timed-out':
      attempt.failure = `no new instance InService within ${timeoutSeconds} s`;
      return undefined;
    case 'withdrawn':
      attempt.failure = `its +1 was taken back: ${answer.reason}`;
      return undefined;
    default:
      attempt.failure = `capacity workflow of "${attempt.asgName}" did not answer within ${backstopSeconds} s`;
      return undefined;
  }
}

/**
 * InService is not Ready: the replacement counts once its Kubernetes node is Ready, or when we stop waiting. The node
 * is usually Ready by the time the answer arrives: a short look as a local activity lets the same workflow task go on
 * to the taint. Only a node still not Ready waits in an activity, which takes another workflow task to come back from.
 */
async function awaitReplacementNodeReady(run: RebalanceRun, replacementInstanceId: string): Promise<void> {
  const { settings } = run;
  run.enterCapacityPhase('waiting-for-node-ready');
  const deadline = Date.now() + settings.nodeReadyTimeoutSeconds * 1000;
  const lookUntil = new Date(Math.min(deadline, Date.now() + NODE_READY_QUICK_LOOK_MS)).toISOString();
  let found: NodeLook | undefined = await quickNodeReadyLook({ instanceId: replacementInstanceId, deadline: lookUntil }).catch(() => undefined);
  if (!isReady(found) && Date.now() < deadline) {
    const awaitNodeReady = awaitNodeReadyFor(settings);
    found = await awaitNodeReady({ instanceId: replacementInstanceId, deadline: new Date(deadline).toISOString() }).catch(() => undefined);
  }
  if (isReady(found)) run.status.replacementNodeName = found.nodeName;
  else run.note(`replacement ${replacementInstanceId} has no Ready node after ${settings.nodeReadyTimeoutSeconds} s; going on`);
}

const isReady = (look: NodeLook | undefined): look is NodeLook & { nodeName: string } => look?.nodeName !== undefined && look.ready;
