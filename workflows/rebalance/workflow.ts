// The rebalance workflow: one per warned instance. Verify, then replacement capacity first (spot +1, or the on-demand
// fallback), then taint and drain the at-risk node, then keep the books so the spot group ends at its original size.
// Its history reads like the runbook an operator would follow by hand.
import { ApplicationFailure, condition, upsertSearchAttributes } from '@temporalio/workflow';
import { searchAttributes } from '../shared/search-attributes.js';
import { announceLaterInterruption, announceStep, noticeKind } from './announce.js';
import { loadSettings } from './activities.js';
import { type InstanceFate, problemsOfRebalanceInput, type RebalanceInput, type RebalanceResult } from './api.js';
import { addReplacementCapacity, useLateReplacement } from './replacement.js';
import { keepTheBooks, releaseKeptNode, watchKeptInstance } from './retire.js';
import { RebalanceRun } from './run.js';
import { drain, taint } from './taint-and-drain.js';
import { verify } from './verify.js';

export async function rebalanceWorkflow(input: RebalanceInput): Promise<RebalanceResult> {
  const problems = problemsOfRebalanceInput(input);
  if (problems.length > 0) throw ApplicationFailure.nonRetryable(problems.join('; '), 'InvalidInput');
  const run = new RebalanceRun(input);
  upsertSearchAttributes([
    { key: searchAttributes.instanceId, value: run.instanceId },
    { key: searchAttributes.node, value: run.nodeName },
    { key: searchAttributes.phase, value: run.status.phase },
  ]);
  const settings = await loadSettings();
  // The warned instance's own group decides the pair: its capacity workflows and its monitor.
  run.settings = { ...settings, ...(await verify(run)) };
  run.status.spot.asgName = run.settings.spotAsgName;
  upsertSearchAttributes([{ key: searchAttributes.asg, value: run.settings.spotAsgName }]);
  await announceStep(run, 'notice-received', `${noticeKind(run)} for ${run.instanceId} (${run.nodeName}) in "${run.settings.spotAsgName}"`, { notice: noticeKind(run) });
  announceLaterInterruption(run);
  // Replacement capacity in the background: an interruption notice must not wait for it.
  run.enterPhase('adding-capacity');
  const capacity = addReplacementCapacity(run).finally(() => {
    run.capacitySettled = true;
  });
  await condition(() => run.capacitySettled || run.drainRequested());

  await taint(run);
  const { drained, fate } = await drainOrHold(run);
  // A drained instance is terminated at once, before AWS's two-minute deadline, while the capacity steps may go on.
  const instanceFate = await keepTheBooks(run, fate, drained);
  if (instanceFate === 'kept' && run.status.reclaimWaitEndedAt) await releaseKeptNode(run);
  await capacity;
  run.status.instanceFate = instanceFate;
  run.enterPhase('done');
  // A drain tried again later (after an incomplete one) may have completed.
  return run.result(drained || run.status.drain?.complete === true, instanceFate);
}

/** Without any replacement the node keeps its pods until AWS interrupts it or an operator says so. */
async function drainOrHold(run: RebalanceRun): Promise<{ drained: boolean; fate?: InstanceFate }> {
  if (run.status.replacement !== 'capacity-unavailable' || run.drainRequested()) return { drained: await drain(run) };
  run.enterPhase('holding');
  await announceStep(run, 'held', 'no replacement capacity: node tainted, its pods stay until a replacement, an interruption notice or drainNow');
  run.note('no replacement capacity: node tainted, pods stay until a late replacement, an interruption notice or a drainNow signal');
  const watched = await watchKeptInstance(run, () => run.drainRequested() || run.lateReplacement() !== undefined, run.status.spot.desiredTarget !== undefined);
  if (watched !== 'drain-requested') {
    await announceStep(run, 'hold-ended', `the hold ended without a drain: instance ${watched}`, { outcome: watched });
    return { drained: false, fate: watched };
  }
  const late = run.lateReplacement();
  if (late && !run.drainRequested()) await useLateReplacement(run, late);
  return { drained: await drain(run) };
}
