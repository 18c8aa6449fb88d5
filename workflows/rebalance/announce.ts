// The rebalance workflow's announcements: each step an operator is told about (a Kubernetes Event on the warned node,
// and on the replacement's node when it has one; metrics; the webhook), keyed by the workflow id, the step and how
// many times it came, so a retry or a replay never announces twice and a drain tried again is a new announcement.
import { condition } from '@temporalio/workflow';
import { announce } from '../shared/announce.js';
import type { NoticeKind, Step, StepFacts } from '../shared/announcements.js';
import { isoNow, type RebalanceRun } from './run.js';

const occurrences = new WeakMap<RebalanceRun, Map<Step, number>>();

/** `where.group`: the group when the run's pair is not known yet (a refusal in verify); the pair's spot group otherwise. */
export function announceStep(
  run: RebalanceRun,
  step: Step,
  message: string,
  facts: StepFacts = {},
  where: { nodeName?: string | null; otherNodeName?: string; group?: string } = {},
): Promise<void> {
  const counts = occurrences.get(run) ?? new Map<Step, number>();
  occurrences.set(run, counts);
  const occurrence = (counts.get(step) ?? 0) + 1;
  counts.set(step, occurrence);
  // null: no Event at all (a node that is not the instance's); undefined: the warned node.
  const nodeName = where.nodeName === null ? undefined : (where.nodeName ?? run.nodeName);
  return announce({
    key: `${run.workflowId}/${step}${occurrence > 1 ? `/${occurrence}` : ''}`,
    step,
    workflowId: run.workflowId,
    at: isoNow(),
    ...(nodeName ? { nodeName } : {}),
    ...(where.otherNodeName ? { otherNodeName: where.otherNodeName } : {}),
    instanceId: run.instanceId,
    group: where.group ?? run.settings.spotAsgName,
    message,
    facts,
  });
}

/** Whole seconds from the notice (the workflow's start) to now. */
export function secondsSinceNotice(run: RebalanceRun): number {
  return Math.max(0, Math.round((Date.now() - Date.parse(run.status.startedAt)) / 1000));
}

export function noticeKind(run: RebalanceRun): NoticeKind {
  return run.status.interruption ? 'spot-interruption' : 'rebalance-recommendation';
}

/**
 * An interruption notice that comes after the run started (its notice-received said rebalance-recommendation) is
 * announced when it comes, beside whatever the run is doing. One that came first was in notice-received already.
 */
export function announceLaterInterruption(run: RebalanceRun): void {
  if (run.status.interruption) return;
  void condition(() => run.status.interruption !== undefined).then(() => {
    const notice = run.status.interruption;
    return announceStep(run, 'interruption-received', `spot interruption notice for ${run.instanceId}: ${notice?.action ?? 'terminate'} at ${notice?.time ?? 'unknown'}; draining at once`, { notice: 'spot-interruption' });
  });
}
