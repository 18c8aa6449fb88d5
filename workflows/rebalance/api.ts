// The rebalance workflow's interface: its input, the status an operator queries, its result, and the two signals an
// operator (or the on-node signaler) sends it.
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { DrainReport } from '../shared/activity-types.js';
import { isInstanceId, isNodeName } from '../shared/ids.js';

export interface RebalanceInput {
  instanceId: string;
  nodeName: string;
  /** When IMDS said so (ISO 8601), as reported by the signaler; informative. */
  noticeTime?: string;
  /**
   * Surplus mode, started by the spot group's capacity workflow: this instance is the replacement the group launched on
   * its own for the warned instance named here, which left without a decrement. The book "desired raised by one" moved
   * to this instance: no spot +1 (the capacity is there), the node is drained and the instance terminated with
   * decrement, whatever SPOT_GUARD_TERMINATE_DRAINED says (no AWS reclaim is coming for it).
   */
  surplusFor?: string;
}

export interface InterruptionNotice {
  /** The action from IMDS spot/instance-action: terminate, stop or hibernate. */
  action: string;
  /** When AWS will act (ISO 8601). */
  time: string;
}

export interface DrainNowRequest {
  reason: string;
}

export type RebalancePhase =
  | 'verifying'
  | 'adding-capacity'
  | 'tainting'
  | 'holding'
  | 'awaiting-drain-slot'
  | 'draining'
  | 'retiring-instance'
  | 'awaiting-reclaim'
  | 'done'
  | 'failed';

export type CapacityPhase =
  | 'not-started'
  | 'scaling-spot'
  | 'waiting-for-spot'
  | 'scaling-on-demand'
  | 'waiting-for-on-demand'
  | 'waiting-for-node-ready'
  | 'done';

/** What the replacement-capacity branch achieved. */
/**
 * `not-needed`: the warned instance had left its group before the spot +1 (the group replaces it, or an operator removed
 * it). `surplus`: the instance is itself one too many (surplus mode), the group's capacity is there already.
 */
export type ReplacementOutcome = 'spot' | 'on-demand' | 'capacity-unavailable' | 'not-requested' | 'not-needed' | 'surplus';

export interface ScaleAttempt {
  asgName: string;
  requestedAt?: string;
  desiredBefore?: number;
  desiredTarget?: number;
  instanceId?: string;
  inServiceAt?: string;
  /** Polls of the group made while this attempt waited (by its capacity workflow, for all waiters at once). */
  polls?: number;
  /** Why this attempt did not produce an instance. */
  failure?: string;
}

/**
 * What became of the warned instance: terminated by Spot Guard with decrement; reclaimed by AWS (desired brought back
 * down); removed by someone else with their own decrement; gone in a way the group's looks could not tell apart
 * (desired left alone, a warning logged); kept (still running when the run ended: the capacity workflow keeps its
 * books until it leaves); not in the group.
 */
export type InstanceFate = 'terminated' | 'reclaimed-by-aws' | 'removed-by-someone-else' | 'left-unsettled' | 'kept' | 'not-in-group';

export interface RebalanceStatus {
  instanceId: string;
  nodeName: string;
  phase: RebalancePhase;
  capacityPhase: CapacityPhase;
  startedAt: string;
  phaseChangedAt: string;
  spot: ScaleAttempt;
  onDemand?: ScaleAttempt;
  replacement?: ReplacementOutcome;
  replacementInstanceId?: string;
  replacementNodeName?: string;
  interruption?: InterruptionNotice & { receivedAt: string };
  drainRequest?: DrainNowRequest & { receivedAt: string };
  taintedAt?: string;
  /** Whether this run cordoned the node (false: it was cordoned before): releasing it then leaves it cordoned. */
  cordonedBySpotGuard?: boolean;
  /** AWS did not take the instance within SPOT_GUARD_RECLAIM_WAIT: the run ends `kept` and gives the node back. */
  reclaimWaitEndedAt?: string;
  /** The disruption budget's answer: queued (with the position when asked), granted, or bypassed by a notice. */
  drainSlot?: { state: 'queued' | 'granted' | 'bypassed'; position?: number; at: string };
  drain?: DrainReport & { finishedAt: string };
  instanceFate?: InstanceFate;
  notes: string[];
}

export interface RebalanceResult {
  instanceId: string;
  nodeName: string;
  replacement: ReplacementOutcome;
  replacementInstanceId?: string;
  tainted: boolean;
  drained: boolean;
  instanceFate: InstanceFate;
  notes: string[];
}

export const interruptionNoticeSignal = defineSignal<[InterruptionNotice]>('interruptionNotice');
export const drainNowSignal = defineSignal<[DrainNowRequest]>('drainNow');
export const rebalanceStatusQuery = defineQuery<RebalanceStatus>('status');

/** The problems of a rebalance input, each naming the bad value and what is expected; empty when it is valid. */
export function problemsOfRebalanceInput(input: RebalanceInput | undefined): string[] {
  const problems: string[] = [];
  if (!isInstanceId(input?.instanceId)) {
    problems.push(`instanceId "${input?.instanceId}" is not an EC2 instance id (expected i- and 8 or 17 hex digits)`);
  }
  if (!isNodeName(input?.nodeName)) problems.push(`nodeName "${input?.nodeName}" is not a Kubernetes node name (a lowercase DNS subdomain)`);
  if (input?.surplusFor !== undefined && !isInstanceId(input.surplusFor)) {
    problems.push(`surplusFor "${String(input.surplusFor)}" is not an EC2 instance id (expected i- and 8 or 17 hex digits)`);
  }
  return problems;
}
