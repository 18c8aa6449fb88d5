// Taint, then drain: the taint keeps new pods off the at-risk node (after the replacement is there, after both
// scale-ups failed, or at once on an interruption notice); the drain waits for a slot of the spot group's disruption
// budget (never for an interruption notice or drainNow), cordons, and evicts the pods through the Eviction API: on a
// rebalance recommendation only those that come back whole elsewhere, on an interruption notice or drainNow all.
import { CancellationScope, condition } from '@temporalio/workflow';
import type { DrainSlotRequest } from '../capacity/api.js';
import type { DrainReport, PodsToLeave } from '../shared/activity-types.js';
import { rootMessage } from '../shared/failures.js';
import { describeDrainBudget } from '../shared/settings.js';
import { cordonNode, evictPodsFor, releaseDrainSlot, requestDrainSlot, taintNode } from './activities.js';
import { announceStep, noticeKind, secondsSinceNotice } from './announce.js';
import { isoNow, type RebalanceRun } from './run.js';

/** A queued workflow asks again this often, in case the capacity workflow lost its queue. */
const DRAIN_SLOT_RECHECK_MS = 60_000;

export async function taint(run: RebalanceRun): Promise<void> {
  run.enterPhase('tainting');
  const tainted = await taintNode({ nodeName: run.nodeName, taint: run.settings.taint });
  if (tainted.nodeGone) run.note(`node ${run.nodeName} is gone from Kubernetes (deleted or reclaimed)`);
  else {
    run.status.taintedAt = isoNow();
    await announceStep(run, 'tainted', `tainted ${run.settings.taint.key}=${run.settings.taint.value}:${run.settings.taint.effect}`, { notice: noticeKind(run), seconds: secondsSinceNotice(run) });
  }
}

/** The drain, inside a slot of the disruption budget; true when every pod is gone. */
export async function drain(run: RebalanceRun): Promise<boolean> {
  await acquireDrainSlot(run);
  try {
    return await evictEveryPod(run);
  } finally {
    await giveBackDrainSlot(run);
  }
}

export function drainSlotRequest(run: RebalanceRun, bypass: boolean): DrainSlotRequest {
  const { settings } = run;
  return {
    requestId: run.drainSlotRequestId,
    workflowId: run.workflowId,
    instanceId: run.instanceId,
    nodeName: run.nodeName,
    budget: settings.drainBudget,
    leaseSeconds: settings.drainTimeoutSeconds + 300,
    bypass,
  };
}

/** Waits for a slot of the spot group's disruption budget; an interruption notice or drainNow is never held. */
async function acquireDrainSlot(run: RebalanceRun): Promise<void> {
  const bypass = run.drainRequested();
  const request = { asgName: run.settings.spotAsgName, ...drainSlotRequest(run, bypass) };
  // Granted, or queued by the budget, with the replacement's answer: nothing to ask (an interruption notice since asks
  // again, to drain at once).
  const answeredAlready = run.drainSlotAskedWithReplacement && (run.drainSlotGranted() || (run.drainSlotAnswer !== undefined && !bypass));
  if (!bypass && !run.drainSlotGranted()) run.enterPhase('awaiting-drain-slot');
  if (!answeredAlready) {
    try {
      await requestDrainSlot(request);
    } catch (error) {
      run.status.drainSlot = { state: 'bypassed', at: isoNow() };
      run.note(`disruption budget unavailable, draining without it: ${rootMessage(error)}`);
      return;
    }
  }
  await awaitDrainSlot(run, () => requestDrainSlot(request));
  run.status.drainSlot = { state: run.drainSlotGranted() && !bypass ? 'granted' : 'bypassed', at: isoNow() };
  if (!run.drainSlotGranted()) run.note('interruption notice or drainNow while queued: draining at once');
}

/** Until granted or a notice arrives, showing the queue position; asking again now and then re-queues if it was lost. */
async function awaitDrainSlot(run: RebalanceRun, askAgain: () => Promise<void>): Promise<void> {
  let shown: typeof run.drainSlotAnswer;
  let askedAt = Date.now();
  for (;;) {
    const fresh = (): boolean => run.drainSlotAnswer !== shown && run.drainSlotAnswer?.status === 'queued';
    const waitMs = Math.max(1, askedAt + DRAIN_SLOT_RECHECK_MS - Date.now());
    await condition(() => run.drainSlotGranted() || run.drainRequested() || fresh(), waitMs);
    if (run.drainSlotGranted() || run.drainRequested()) return;
    const answer = run.drainSlotAnswer;
    if (fresh() && answer?.status === 'queued') {
      if (!shown) run.note(`queued by the disruption budget (${describeDrainBudget(run.settings.drainBudget)}, ${answer.limit} at once): position ${answer.position}`);
      shown = answer;
      run.status.drainSlot = { state: 'queued', position: answer.position, at: isoNow() };
      run.enterPhase('awaiting-drain-slot');
      continue;
    }
    await askAgain().catch(() => undefined);
    askedAt = Date.now();
  }
}

async function giveBackDrainSlot(run: RebalanceRun): Promise<void> {
  try {
    await releaseDrainSlot({ asgName: run.settings.spotAsgName, requestId: run.drainSlotRequestId });
  } catch (error) {
    run.note(`could not release the drain slot: ${rootMessage(error)}`); // its lease frees the slot anyway
  }
}

/** Cordon, then evict the pods (PodDisruptionBudgets respected) until the drain timeout; true when none is left. */
async function evictEveryPod(run: RebalanceRun): Promise<boolean> {
  const { nodeName } = run;
  run.enterPhase('draining');
  const cordoned = await cordonNode({ nodeName });
  if (cordoned.nodeGone) {
    run.note(`node ${nodeName} is gone from Kubernetes: nothing left to drain`);
    return true;
  }
  run.status.cordonedBySpotGuard ??= !cordoned.alreadyCordoned;
  const startedAt = Date.now();
  try {
    const report = await evictThePods(run);
    run.status.drain = { ...report, finishedAt: isoNow() };
    await announceDrained(run, report, Math.round((Date.now() - startedAt) / 1000));
    if (!report.complete) noteWhatIsLeft(run, report);
    return report.complete;
  } catch (error) {
    run.note(`drain failed: ${rootMessage(error)}`);
    return false;
  }
}

/** What a drain on a rebalance recommendation leaves: the pods an eviction would lose for good. */
const LEAVE_UNRECREATABLE: PodsToLeave = { onlyRecreatable: true, keepLocalData: true };

/**
 * Every pod goes on an interruption notice or drainNow (AWS takes the node two minutes after the notice, pods or not;
 * drainNow is an operator's decision), or with SPOT_GUARD_EVICT_UNRECREATABLE_PODS=always. On a mere rebalance
 * recommendation, which may come hours before any interruption, the pods an eviction would lose for good (no
 * controller, emptyDir data) stay, and the drain is incomplete: the instance is kept until they go or a notice comes.
 * A notice while that drain runs cuts it short: every pod goes at once.
 */
async function evictThePods(run: RebalanceRun): Promise<DrainReport> {
  if (run.drainRequested() || run.settings.evictUnrecreatablePods === 'always') return evictPodsNow(run, {});
  const report = await drainUntilNotice(run);
  if (report && (report.complete || !run.drainRequested())) return report;
  run.note('interruption notice or drainNow during the drain: evicting every pod now, those it was leaving too');
  return evictPodsNow(run, {});
}

/** The drain that leaves the pods nothing recreates; undefined when a notice cut it short (its activity is cancelled). */
async function drainUntilNotice(run: RebalanceRun): Promise<DrainReport | undefined> {
  let outcome: { report: DrainReport } | { error: unknown } | undefined;
  const scope = new CancellationScope();
  const drained = scope.run(() => evictPodsNow(run, LEAVE_UNRECREATABLE)).then(
    (report) => {
      outcome = { report };
    },
    (error: unknown) => {
      outcome = { error };
    },
  );
  await condition(() => outcome !== undefined || run.drainRequested());
  if (outcome === undefined) {
    scope.cancel();
    await drained;
    return undefined;
  }
  if ('error' in outcome) throw outcome.error;
  return outcome.report;
}

function evictPodsNow(run: RebalanceRun, leave: PodsToLeave): Promise<DrainReport> {
  const { nodeName, settings } = run;
  const deadline = new Date(Date.now() + settings.drainTimeoutSeconds * 1000).toISOString();
  return evictPodsFor(settings)({ nodeName, deadline, ...leave });
}

function announceDrained(run: RebalanceRun, report: DrainReport, seconds: number): Promise<void> {
  const counts = { evicted: report.evicted.length, left: report.left.length, remaining: report.remaining.length };
  const message = `drained in ${seconds} s: ${counts.evicted} pod(s) evicted, ${counts.left} left (nothing recreates them), ${counts.remaining} still there (a disruption budget or terminating)`;
  return announceStep(run, 'drained', message, { ...counts, seconds, notice: noticeKind(run) });
}

function noteWhatIsLeft(run: RebalanceRun, report: DrainReport): void {
  if (report.left.length > 0) {
    run.note(
      `left ${report.left.length} pod(s) an eviction would lose, until an interruption notice or drainNow (SPOT_GUARD_EVICT_UNRECREATABLE_PODS=on-interruption), the instance kept for them: ${report.left.join(', ')}`,
    );
  }
  if (report.remaining.length > 0) {
    run.note(`drain stopped at its timeout with ${report.remaining.length} pod(s) left: ${report.remaining.join(', ')}`);
  }
}
