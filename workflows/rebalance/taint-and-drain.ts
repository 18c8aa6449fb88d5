// Taint, then drain: the taint keeps new pods off the at-risk node (after the replacement is there, after both
// scale-ups failed, or at once on an interruption notice); the drain waits for a slot of the spot group's disruption
// budget (never for an interruption notice or drainNow), cordons, and evicts every pod through the Eviction API.
import { condition } from '@temporalio/workflow';
import type { DrainSlotRequest } from '../capacity/api.js';
import { rootMessage } from '../shared/failures.js';
import { describeDrainBudget } from '../shared/settings.js';
import { cordonNode, evictPodsFor, releaseDrainSlot, requestDrainSlot, taintNode } from './activities.js';
import { isoNow, type RebalanceRun } from './run.js';

/** A queued workflow asks again this often, in case the capacity workflow lost its queue. */
const DRAIN_SLOT_RECHECK_MS = 60_000;

export async function taint(run: RebalanceRun): Promise<void> {
  run.enterPhase('tainting');
  const tainted = await taintNode({ nodeName: run.nodeName, taint: run.settings.taint });
  if (tainted.nodeGone) run.note(`node ${run.nodeName} is gone from Kubernetes (deleted or reclaimed)`);
  else run.status.taintedAt = isoNow();
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
      run.enterPhase('awaiting-drain-slot');
      run.status.drainSlot = { state: 'queued', position: answer.position, at: isoNow() };
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

/** Cordon, then evict every pod (PodDisruptionBudgets respected) until the drain timeout. */
async function evictEveryPod(run: RebalanceRun): Promise<boolean> {
  const { nodeName, settings } = run;
  run.enterPhase('draining');
  const cordoned = await cordonNode({ nodeName });
  if (cordoned.nodeGone) {
    run.note(`node ${nodeName} is gone from Kubernetes: nothing left to drain`);
    return true;
  }
  const deadline = new Date(Date.now() + settings.drainTimeoutSeconds * 1000).toISOString();
  try {
    const report = await evictPodsFor(settings)({ nodeName, deadline });
    run.status.drain = { ...report, finishedAt: isoNow() };
    if (!report.complete) run.note(`drain stopped at its timeout with ${report.remaining.length} pod(s) left: ${report.remaining.join(', ')}`);
    return report.complete;
  } catch (error) {
    run.note(`drain failed: ${rootMessage(error)}`);
    return false;
  }
}
