// The one module shared by workflows, activities, the worker, the signaler and operators' tooling: workflow ids,
// signal/query/update definitions, search-attribute keys and the plain-object types that cross those boundaries.
// It must stay free of I/O so the workflow bundle can import it.
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const TASK_QUEUE_DEFAULT = 'spot-guard';

/** Workflow id of the rebalance workflow for one instance: a repeated notice for it can never start a second run. */
export function rebalanceWorkflowId(instanceId: string): string {
  return `spot-guard-rebalance-${instanceId}`;
}

/** Workflow id of the entity workflow that owns every desired-capacity change of one Auto Scaling group. */
export function capacityWorkflowId(asgName: string): string {
  return `spot-guard-capacity-${asgName}`;
}

// EC2 instance ids: "i-" and 8 (legacy) or 17 hex digits.
export const INSTANCE_ID_PATTERN = /^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$/;
// Kubernetes node names are DNS subdomains (RFC 1123), at most 253 characters.
export const NODE_NAME_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
// Auto Scaling group names: 1-255 characters of the Unicode BMP except control characters; we also refuse blanks.
export const ASG_NAME_PATTERN = /^[^\s\x00-\x1f\x7f]{1,255}$/;

/** An Auto Scaling lifecycle state on the way out: Terminating, Terminating:Wait, Terminating:Proceed, Terminated. */
export function isTerminatingState(lifecycleState: string | undefined): boolean {
  return /^Terminat/.test(lifecycleState ?? '');
}

// ---------------------------------------------------------------------------------------------------------------
// Search attributes: registered on the namespace at worker start so the Temporal UI can filter by them.

export const searchAttributes = {
  instanceId: defineSearchAttributeKey('SpotGuardInstanceId', SearchAttributeType.KEYWORD),
  node: defineSearchAttributeKey('SpotGuardNode', SearchAttributeType.KEYWORD),
  asg: defineSearchAttributeKey('SpotGuardAsg', SearchAttributeType.KEYWORD),
  phase: defineSearchAttributeKey('SpotGuardPhase', SearchAttributeType.KEYWORD),
  outcome: defineSearchAttributeKey('SpotGuardOutcome', SearchAttributeType.KEYWORD),
} as const;

export const allSearchAttributeKeys = Object.values(searchAttributes);

// ---------------------------------------------------------------------------------------------------------------
// Settings the worker hands to workflows through the loadSettings activity, so every run records in its history
// the values it acted on.

export interface TaintSpec {
  key: string;
  value: string;
  effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
}

/** An instance's Kubernetes node as last seen: its name (none yet) and whether it is Ready. */
export interface NodeLook {
  nodeName?: string;
  ready: boolean;
}

export interface FlowSettings {
  spotAsgName: string;
  onDemandAsgName: string;
  /** ENABLE_SPOT_GUARD: false leaves only the taint and drain (the plain Node Termination Handler behaviour). */
  addReplacementCapacity: boolean;
  /** Interval between two looks at a group while waiting for a new instance. */
  asgPollIntervalSeconds: number;
  /** How long to wait for a new spot instance before falling back to on-demand. */
  capacityCheckTimeoutSeconds: number;
  /** How long to wait for the on-demand fallback instance. */
  scaleTimeoutSeconds: number;
  /** How long to wait for the replacement's Kubernetes node to be Ready once its instance is InService. */
  nodeReadyTimeoutSeconds: number;
  taint: TaintSpec;
  /** Upper bound of one drain; PDB refusals are retried until then. */
  drainTimeoutSeconds: number;
  /** Terminate the drained instance (with ShouldDecrementDesiredCapacity) instead of waiting for AWS to take it. */
  terminateDrainedInstance: boolean;
  /** While the at-risk instance is kept (no capacity, or termination disabled), how often to look whether it is gone. */
  reclaimPollSeconds: number;
  /** How long to keep watching a kept instance before the workflow ends and leaves it to the operator. */
  reclaimWaitSeconds: number;
  /** Capacity requests arriving within this window of the first become one SetDesiredCapacity call. */
  coalesceWindowSeconds: number;
  /** At most this many of the spot group's nodes drain at once (interruption notices and drainNow are never held). */
  drainBudget: DrainBudget;
  /**
   * Benchmark only (SPOT_GUARD_BENCH_NAIVE_CAPACITY): each workflow reads desired, writes desired+1 and polls the group
   * itself, as the original flow documents did. Loses increments under concurrency; never use it in production.
   */
  naiveCapacity?: boolean;
  monitor: MonitorSettings;
}

/** A disruption budget: a fixed number of nodes, or a percentage of the group's desired capacity (rounded up, >= 1). */
export type DrainBudget = { nodes: number } | { percent: number };

/** How many nodes the budget allows draining at once in a group of this size. */
export function drainBudgetLimit(budget: DrainBudget, groupSize: number): number {
  if ('nodes' in budget) return Math.max(1, budget.nodes);
  return Math.max(1, Math.ceil((budget.percent / 100) * groupSize));
}

export function describeDrainBudget(budget: DrainBudget): string {
  return 'nodes' in budget ? `${budget.nodes} node(s)` : `${budget.percent}%`;
}

/** Settings of the revert-to-spot monitor. */
export interface MonitorSettings {
  /** How often the monitor looks at the spot group. */
  checkIntervalSeconds: number;
  /** How long spot must stay healthy without a break before an on-demand node is removed. */
  stabilityWindowSeconds: number;
  /** Fallback events with nothing left to do are forgotten this long after they closed. */
  cleanupAfterSeconds: number;
  /** Taint put on an on-demand node about to be removed (distinct from the rebalance taint). */
  scaleDownTaint: TaintSpec;
  /** Room the rest of the cluster must have beyond the moved pods' requests, in percent of those requests. */
  capacityBufferPercent: number;
  /** Also remove on-demand instances Spot Guard did not launch (oldest first) once no fallback event is left. */
  removeUnlaunchedOnDemand: boolean;
  /** How long to wait for evicted pods to run elsewhere before the instance is terminated anyway. */
  podRescheduleTimeoutSeconds: number;
}

// ---------------------------------------------------------------------------------------------------------------
// Rebalance workflow

export interface RebalanceInput {
  instanceId: string;
  nodeName: string;
  /** When IMDS said so (ISO 8601), as reported by the signaler; informative. */
  noticeTime?: string;
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
export type ReplacementOutcome = 'spot' | 'on-demand' | 'capacity-unavailable' | 'not-requested';

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

export interface DrainReport {
  evicted: string[];
  skipped: string[];
  remaining: string[];
  complete: boolean;
}

export type InstanceFate = 'terminated' | 'reclaimed-by-aws' | 'kept' | 'not-in-group';

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

// ---------------------------------------------------------------------------------------------------------------
// Capacity workflow (one per Auto Scaling group)

export interface CapacityWorkflowInput {
  asgName: string;
  /** Carried across continue-as-new; absent on the first run. */
  carried?: CapacityCarriedState;
}

export interface IncreaseCapacityRequest {
  /** Unique per logical request (e.g. "<rebalance workflow id>/spot"); a repeat returns the first answer. */
  requestId: string;
  /** Requests arriving within this many seconds of the first waiting one are applied together (default 0). */
  coalesceSeconds?: number;
  /**
   * Set by a caller that waits for its new instance: the capacity workflow polls the group once per interval for all
   * its waiters and signals each (replacementAnswerSignal) when an instance is InService for it, when a capacity
   * problem shows, or when the wait ends.
   */
  waiter?: ReplacementWaiterRequest;
}

export interface ReplacementWaiterRequest {
  workflowId: string;
  waitSeconds: number;
  pollIntervalSeconds: number;
  /**
   * The drain slot the waiter will need once its instance is InService: asked for then, and answered (granted, or
   * queued with its position) with the instance, instead of by a request and an answer of its own. Dropped if the
   * waiter asks for the same slot on its own before (an interruption notice drains at once).
   */
  drainSlot?: Omit<DrainSlotRequest, 'bypass'>;
}

/** What a capacity workflow tells a waiting workflow about the instance it asked for. */
export type ReplacementAnswer =
  | { requestId: string; status: 'in-service'; instanceId: string; at: string; polls: number; drainSlot?: DrainSlotAnswer }
  | { requestId: string; status: 'capacity-problem'; message: string; at: string; polls: number }
  | { requestId: string; status: 'timed-out'; waitSeconds: number; at: string; polls: number };

/** A waiter kept by the capacity workflow until it is answered. */
export interface ReplacementWaiter extends ReplacementWaiterRequest {
  requestId: string;
  /** When desired capacity was raised for it: capacity problems starting from then count against it. */
  since: string;
  deadline: string;
  /** Polls of the group made before this waiter joined (its answer says how many were made for it). */
  pollsBefore?: number;
}

export type IncreaseCapacityResult =
  | {
      status: 'granted';
      desiredBefore: number;
      desiredTarget: number;
      /** Instance ids in the group just before the increase: a new instance is one not in this list. */
      instancesBefore: string[];
      /** When SetDesiredCapacity was applied (ISO 8601, AWS-side wall clock of the worker). */
      appliedAt: string;
    }
  | { status: 'at-max-size'; desired: number; maxSize: number }
  /**
   * A request with a waiter is answered at once (Temporal admits only a few Updates in flight per workflow, and a
   * wave sends hundreds); the grant follows by signal (capacityAnswerSignal) once its batch is applied.
   */
  | { status: 'queued' };

/** The grant (or refusal) of a queued increase, signalled to its waiter. */
export type CapacityAnswer = { requestId: string } & (
  | Exclude<IncreaseCapacityResult, { status: 'queued' }>
  | { status: 'failed'; message: string }
);

export interface RetireInstanceRequest {
  requestId: string;
  instanceId: string;
  /**
   * true: terminate it now with ShouldDecrementDesiredCapacity. false: only settle the books if AWS already took it,
   * otherwise report that it is still running.
   */
  terminate: boolean;
  /**
   * Whether desired capacity was raised for this instance and must come down with it (default true). false when the
   * group was never raised (at MaxSize): it then replaces the instance and keeps its size.
   */
  decrement?: boolean;
  /**
   * What an instance already gone from the group means. 'settle-books' (default, for a warned spot instance): AWS took
   * it, so bring desired back down by the one added for it. 'leave' (for the monitor): it went some other way; change
   * nothing and answer not-in-group.
   */
  ifAbsent?: 'settle-books' | 'leave';
  /**
   * The workflow to answer by signal (retirementAnswerSignal): set when the request is sent by signal, as a wave sends
   * hundreds at once and Temporal admits only a few Updates in flight per workflow.
   */
  replyTo?: string;
}

/** The answer to a signalled retirement request. */
export type RetirementAnswer = { requestId: string } & (RetireInstanceResult | { status: 'failed'; message: string });

export type RetireInstanceResult =
  | { status: 'terminated'; desiredAfter: number }
  | { status: 'reclaimed-by-aws'; desiredAfter: number }
  | { status: 'not-in-group' }
  | { status: 'still-running' };

export interface CapacityRecord {
  requestId: string;
  kind: 'increase' | 'retire';
  at: string;
  result: IncreaseCapacityResult | RetireInstanceResult;
}

export interface RetiredInstance {
  /** terminating: the terminate call was made but not confirmed; the group tells whether it took effect. */
  how: 'terminating' | 'terminated' | 'reclaimed-by-aws';
  at: string;
  desiredAfter: number;
}

export interface CapacityCarriedState {
  /** Answers to recent requests by request id, so a retried request never applies twice, even across runs. */
  completed: Record<string, CapacityRecord>;
  /**
   * Instances this group's books were settled for, by instance id, recorded before the terminate call is made: a
   * later request about the same instance (any request id) never decrements a second time.
   */
  retired?: Record<string, RetiredInstance>;
  appliedChanges: number;
  waits?: GroupWaits;
  drains?: DrainQueue;
}

/** Workflows waiting for a new instance of this group, and what the group looked like before they asked. */
export interface GroupWaits {
  waiters: ReplacementWaiter[];
  /** Instances in the group when the first of the current waiters was granted: none of them is anyone's replacement. */
  baseline: string[];
  /** New instances already given to a waiter. */
  assigned: string[];
  polls: number;
}

export interface DrainSlotRequest {
  requestId: string;
  workflowId: string;
  instanceId: string;
  nodeName: string;
  budget: DrainBudget;
  /** The slot is freed after this long even if no release arrives (a workflow terminated by hand). */
  leaseSeconds: number;
  /** An interruption notice or drainNow: drain at once, counted against the budget but never held by it. */
  bypass?: boolean;
}

export type DrainSlotAnswer = { requestId: string } & ({ status: 'granted' } | { status: 'queued'; position: number; limit: number });

export interface DrainHolder {
  requestId: string;
  workflowId: string;
  instanceId: string;
  nodeName: string;
  since: string;
  leaseUntil: string;
  bypass: boolean;
}

export interface DrainQueue {
  draining: DrainHolder[];
  queued: (DrainSlotRequest & { queuedAt: string })[];
  budget?: DrainBudget;
}

export interface CapacityStatus {
  asgName: string;
  pendingRequests: string[];
  lastDesired?: number;
  lastMaxSize?: number;
  appliedChanges: number;
  recent: CapacityRecord[];
  /**
   * Waiting for new instances: how many, the group polls made for them, the new instances given to them, and the
   * new instances launching for them at the latest poll when there were enough for all (then the polls read the
   * instances alone, twice per interval).
   */
  waiting: { count: number; oldestSince?: string; polls: number; assigned: number; launching: number };
  /** The disruption budget: nodes draining now and those queued in order. */
  drainBudget?: { limit: number; budget: string };
  draining: DrainHolder[];
  drainQueue: { instanceId: string; nodeName: string; queuedAt: string }[];
}

export const increaseCapacityUpdate = defineUpdate<IncreaseCapacityResult, [IncreaseCapacityRequest]>('increaseCapacity');
/** An increase with a waiter, by signal: answered by capacityAnswerSignal. */
export const increaseCapacityRequestSignal = defineSignal<[IncreaseCapacityRequest]>('requestCapacityIncrease');
export const retireInstanceUpdate = defineUpdate<RetireInstanceResult, [RetireInstanceRequest]>('retireInstance');
/** The same request by signal (with replyTo), answered by retirementAnswerSignal. */
export const retireInstanceRequestSignal = defineSignal<[RetireInstanceRequest]>('requestInstanceRetirement');
/**
 * Drain slots are asked for by signal (Signal-with-Start from an activity), not by Update: Temporal admits only a few
 * Updates in flight per workflow, and a wave asks for hundreds of slots within seconds. The answer comes by signal.
 */
export const drainSlotRequestSignal = defineSignal<[DrainSlotRequest]>('requestDrainSlot');
export const releaseDrainSlotSignal = defineSignal<[{ requestId: string }]>('releaseDrainSlot');
export const capacityStatusQuery = defineQuery<CapacityStatus>('status');
/** Sent by a capacity workflow to a workflow whose queued increase was applied (or refused). */
export const capacityAnswerSignal = defineSignal<[CapacityAnswer]>('capacityAnswer');
/** Sent by a capacity workflow to the workflow waiting for a new instance. */
export const replacementAnswerSignal = defineSignal<[ReplacementAnswer]>('replacementAnswer');
/** Sent by a capacity workflow to the workflow that asked by signal to retire (or look at) an instance. */
export const retirementAnswerSignal = defineSignal<[RetirementAnswer]>('retirementAnswer');
/** Sent by a capacity workflow to a workflow whose queued drain may start now. */
export const drainSlotAnswerSignal = defineSignal<[DrainSlotAnswer]>('drainSlotAnswer');

/** The signals through which a capacity workflow answers: the only ones its sendAnswers activity may send. */
export const ANSWER_SIGNAL_NAMES = [capacityAnswerSignal.name, replacementAnswerSignal.name, retirementAnswerSignal.name, drainSlotAnswerSignal.name];

/** One answer of a capacity workflow to a waiting workflow. */
export interface WorkflowAnswer {
  workflowId: string;
  signalName: string;
  answer: CapacityAnswer | ReplacementAnswer | RetirementAnswer | DrainSlotAnswer;
}

// ---------------------------------------------------------------------------------------------------------------
// Revert-to-spot monitor (one per spot/on-demand pair)

export function monitorWorkflowId(spotAsgName: string, onDemandAsgName: string): string {
  return `spot-guard-monitor-${spotAsgName}-${onDemandAsgName}`;
}

/** Pod annotation an operator sets to let the monitor move a pod that no controller would recreate. */
export const SAFE_TO_EVICT_ANNOTATION = 'spot-guard.io/safe-to-evict';

/** Sent by a rebalance workflow that fell back to on-demand: which on-demand instance, for which warned one, when. */
export interface FallbackReport {
  onDemandInstanceId: string;
  warnedInstanceId: string;
  warnedNodeName: string;
  launchedAt: string;
}

export interface FallbackEvent extends FallbackReport {
  /** tracked: still to be removed; removed: Spot Guard terminated it; gone: it left the group some other way. */
  state: 'tracked' | 'removed' | 'gone';
  closedAt?: string;
  /** Scale-downs of it given up (drain or rescheduling failed); at MAX_SCALE_DOWN_ATTEMPTS it is left to the operator. */
  failedAttempts?: number;
}

/** A fallback instance whose scale-down failed this often is no longer picked (its event says so). */
export const MAX_SCALE_DOWN_ATTEMPTS = 3;

export interface HealthCheck {
  at: string;
  healthy: boolean;
  reasons: string[];
}

export interface SafetyVerdict {
  at: string;
  instanceId: string;
  nodeName?: string;
  safe: boolean;
  reason: string;
}

/** A scale-down under way, kept in state so a failure or restart resumes the same node instead of taking another. */
export interface ScaleDownInFlight {
  instanceId: string;
  nodeName?: string;
  launchedBySpotGuard: boolean;
  step: 'draining' | 'awaiting-pods' | 'terminating';
  startedAt: string;
  attempts: number;
  /** Controllers of the pods moved away, to see them running elsewhere. */
  owners: PodOwner[];
}

export interface PodOwner {
  namespace: string;
  kind: string;
  name: string;
  uid: string;
}

export interface MonitorState {
  events: FallbackEvent[];
  paused: boolean;
  pausedReason?: string;
  /** Start of the current unbroken healthy streak of the spot group (ISO 8601), kept across restarts and runs. */
  healthySince?: string;
  /** Scaling failures are counted from here on (the previous check). */
  failuresCountedSince?: string;
  lastCheck?: HealthCheck;
  lastSafety?: SafetyVerdict;
  inFlight?: ScaleDownInFlight;
  scaleDowns: number;
  notes: string[];
}

export interface MonitorInput {
  spotAsgName: string;
  onDemandAsgName: string;
  carried?: MonitorState;
  /** Continue-as-new once the history is this long (the server's suggestion counts too). */
  historyBound?: number;
}

export interface MonitorStatus extends MonitorState {
  spotAsgName: string;
  onDemandAsgName: string;
  /** When the healthy streak will have lasted the stability window. */
  stableAt?: string;
  phase: 'paused' | 'waiting-for-health' | 'waiting-for-stability' | 'idle' | 'blocked' | 'scaling-down';
}

export interface PauseRequest {
  reason: string;
}

export const fallbackLaunchedSignal = defineSignal<[FallbackReport]>('fallbackLaunched');
export const pauseMonitorSignal = defineSignal<[PauseRequest]>('pause');
export const resumeMonitorSignal = defineSignal<[]>('resume');
export const checkNowSignal = defineSignal<[]>('checkNow');
export const monitorStatusQuery = defineQuery<MonitorStatus>('status');
