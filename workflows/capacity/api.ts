// The capacity workflow's protocol: one entity workflow per Auto Scaling group owns every desired-capacity change of
// that group. Every request has one way in, a signal (sent by Signal-with-Start from an activity, so a wave of
// hundreds is never capped the way Updates in flight are), one validation (below, run by the sending activity and
// again by the workflow's handler) and one answer, by signal to the workflow that asked.
import { defineQuery, defineSignal } from '@temporalio/workflow';
import { isInstanceId } from '../shared/ids.js';
import type { DrainBudget } from '../shared/settings.js';

export interface CapacityWorkflowInput {
  asgName: string;
  /** Carried across continue-as-new; absent on the first run. */
  carried?: CapacityCarriedState;
  /** Continue-as-new once the history is this long (the server's suggestion counts too). */
  historyBound?: number;
}

// --- spot +1 ------------------------------------------------------------------------------------------------------

/** "One more instance in this group, and tell me which one is mine": answered by capacityAnswer, then replacementAnswer. */
export interface IncreaseCapacityRequest {
  /** Unique per logical request (e.g. "<rebalance workflow id>/spot"); a repeat gets the first answer again. */
  requestId: string;
  /** Requests arriving within this many seconds of the first waiting one are applied together (default 0). */
  coalesceSeconds?: number;
  waiter: ReplacementWaiterRequest;
  /**
   * The warned member of this group this increase replaces (verified to be in the group): the group's books keep
   * "raised by one for it" until it leaves the group, and settle that exactly once (see books.ts). Not for an on-demand
   * fallback, whose warned instance is in another group.
   */
  forInstanceId?: string;
}

export interface ReplacementWaiterRequest {
  /** The workflow the answers go to. */
  workflowId: string;
  waitSeconds: number;
  pollIntervalSeconds: number;
  /**
   * The drain slot the waiter will need once its instance is InService: asked for then, and answered (granted, or
   * queued with its position) with the instance, instead of by a request and an answer of its own. Dropped if the
   * waiter asks for the same slot on its own before (an interruption notice drains at once).
   */
  drainSlot?: Omit<DrainSlotRequest, 'bypass'>;
  /**
   * For an on-demand fallback: the pair and warned node it stands for. An instance that comes after the waiter's
   * deadline is then reported to that pair's revert-to-spot monitor, which removes it once spot is healthy again.
   */
  fallbackFor?: FallbackTarget;
}

export interface FallbackTarget {
  spotAsgName: string;
  warnedInstanceId: string;
  warnedNodeName: string;
}

/** What the increase came to: the absolute target applied, or no room below MaxSize. */
export type IncreaseGrant =
  | { status: 'granted'; desiredBefore: number; desiredTarget: number; /** When SetDesiredCapacity was sent (ISO 8601). */ appliedAt: string }
  | { status: 'at-max-size'; desired: number; maxSize: number }
  /**
   * The warned instance it was for had left the group by the look before the +1 (AWS took it, or an operator): its
   * capacity is the group's own business again (it relaunches to desired, or the operator lowered desired), so no +1.
   */
  | { status: 'warned-instance-gone'; desired: number }
  /**
   * The warned instance is itself a surplus: the group launched it on its own for another warned instance that left
   * without a decrement, whose book moved to it. Desired is raised for it already: no +1; drain it, then retire it with
   * decrement (the run goes on as a surplus run).
   */
  | { status: 'surplus'; desired: number };

/** A request the capacity workflow could not apply, with its failure's type when it had one. */
export interface FailedAnswer {
  status: 'failed';
  message: string;
  /** BELOW_MIN_SIZE: a terminate with decrement refused because the group is at its MinSize. */
  type?: string;
}

/** The failure type of a terminate with decrement refused because it would take the group below its MinSize. */
export const BELOW_MIN_SIZE = 'BelowMinSize';

export type CapacityAnswer = { requestId: string } & (IncreaseGrant | FailedAnswer);

/** What a capacity workflow tells a waiting workflow about the instance it asked for. */
export type ReplacementAnswer =
  | { requestId: string; status: 'in-service'; instanceId: string; at: string; polls: number; drainSlot?: DrainSlotAnswer }
  | { requestId: string; status: 'capacity-problem'; message: string; at: string; polls: number }
  | { requestId: string; status: 'timed-out'; waitSeconds: number; at: string; polls: number }
  /**
   * Someone else took its +1 back (removed a launching instance with a decrement, or lowered desired): the group will
   * launch nothing more for it. Not watched for a late instance either: a later one is somebody else's.
   */
  | { requestId: string; status: 'withdrawn'; reason: string; at: string; polls: number };

// --- terminate with decrement, or settle the books of a reclaimed instance ---------------------------------------

export interface RetireInstanceRequest {
  requestId: string;
  instanceId: string;
  /**
   * true: terminate it now with ShouldDecrementDesiredCapacity. false: only settle the books if AWS already took it,
   * otherwise answer that it is still running.
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
  /** The workflow the answer (retirementAnswer) goes to. */
  replyTo: string;
}

export type RetireInstanceResult =
  | { status: 'terminated'; desiredAfter: number }
  | { status: 'reclaimed-by-aws'; desiredAfter: number }
  /** It left with a decrement made by someone else (an operator, another tool): the books needed nothing more. */
  | { status: 'removed-by-someone-else'; desiredAfter: number }
  /** It left, and the group's looks could not tell how: desired was left alone (a warning says so). */
  | { status: 'left-unsettled'; desiredAfter: number }
  | { status: 'not-in-group' }
  | { status: 'still-running' };

export type RetirementAnswer = { requestId: string } & (RetireInstanceResult | FailedAnswer);

// --- the disruption budget --------------------------------------------------------------------------------------

export interface DrainSlotRequest {
  requestId: string;
  /** The workflow the answer (drainSlotAnswer) goes to. */
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

export interface ReleaseDrainSlotRequest {
  requestId: string;
}

// --- state carried across continue-as-new, and the status query ----------------------------------------------------

export interface CapacityRecord {
  requestId: string;
  kind: 'increase' | 'retire';
  at: string;
  result: IncreaseGrant | RetireInstanceResult;
  /** For an increase: what its waiter was told about its instance, told again when the request comes again. */
  replacement?: ReplacementAnswer;
  /** For an increase whose wait ended without an instance: the instance that came later, told again too. */
  lateReplacement?: ReplacementAnswer;
}

export interface RetiredInstance {
  /** terminating: the terminate call was made but not confirmed; the group tells whether it took effect. */
  how: 'terminating' | 'terminated' | 'reclaimed-by-aws' | 'removed-by-someone-else' | 'left-unsettled';
  at: string;
  desiredAfter: number;
}

/** A waiter kept by the capacity workflow until it is answered. */
export interface ReplacementWaiter extends ReplacementWaiterRequest {
  requestId: string;
  /** When desired capacity was raised for it: capacity problems starting from then count against it. */
  since: string;
  deadline: string;
  /** Polls of the group made before this waiter joined (its answer says how many were made for it). */
  pollsBefore: number;
  /** Granted in a dry run: desired was not raised for it, so it claims no launch of the group. */
  dryRun?: true;
}

/**
 * A waiter whose wait ended without an instance (timed out, or a capacity problem) while desired stays raised: an
 * instance launched later is still its own. It is told (answer id `<requestId>/late`), so a held node can drain.
 */
export interface LateWaiter {
  requestId: string;
  workflowId: string;
  since: string;
  /** Watched until then; an on-demand fallback's increase is given back if nothing launched by then. */
  lateUntil: string;
  fallbackFor?: FallbackTarget;
}

/** The suffix of a late answer's request id: `<requestId>/late`. */
export const LATE_SUFFIX = '/late';

/** Workflows waiting for a new instance of this group, and what the group looked like before they asked. */
export interface GroupWaits {
  /** Waiters whose wait ended without an instance: watched for a late one (absent in runs recorded before). */
  late?: LateWaiter[];
  /** Instances that are no late waiter's: InService when a watch began, or given to a waiter since. */
  lateKnown?: string[];
  waiters: ReplacementWaiter[];
  /** Instances in the group when the first of the current waiters was granted: none of them is anyone's replacement. */
  baseline: string[];
  /** New instances already given to a waiter. */
  assigned: string[];
  polls: number;
}

/** "Desired was raised by one for this warned instance": open while the instance is in the group. */
export interface Book {
  instanceId: string;
  /** The increase that raised it: its answers are remembered while the book is open. */
  requestId: string;
  raisedAt: string;
  /**
   * A surplus instance's book: the warned instance it was opened for left without a decrement, and the group launched
   * this one in its place, which is drained and terminated with decrement (a rebalance run in surplus mode).
   */
  carriedFor?: string;
}

/** The group as Spot Guard last knew it (its own changes included): departures are measured against it. */
export interface BooksView {
  desired: number;
  /** Instances not on their way out. */
  live: string[];
}

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

export interface CapacityCarriedState {
  /** Answers to recent requests by request id, so a repeated request never applies twice, even across runs. */
  completed: Record<string, CapacityRecord>;
  /**
   * Instances this group's books were settled for, by instance id, recorded before the terminate call is made: a
   * later request about the same instance (any request id) never decrements a second time.
   */
  retired: Record<string, RetiredInstance>;
  appliedChanges: number;
  waits?: GroupWaits;
  drains?: DrainQueue;
  /** Open books, by warned instance id. */
  books?: Record<string, Book>;
  booksView?: BooksView;
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
  waiting: { count: number; oldestSince?: string; polls: number; assigned: number; launching: number; /** Waits that ended without an instance, watched for a late one. */ late: number };
  /** The disruption budget: nodes draining now and those queued in order. */
  drainBudget?: { limit: number; budget: string };
  draining: DrainHolder[];
  drainQueue: { instanceId: string; nodeName: string; queuedAt: string }[];
  /** Warned instances desired is raised for, held on purpose until they leave the group. */
  books: Book[];
}

// --- signals and query ------------------------------------------------------------------------------------------------

export const increaseCapacityRequestSignal = defineSignal<[IncreaseCapacityRequest]>('requestCapacityIncrease');
export const retireInstanceRequestSignal = defineSignal<[RetireInstanceRequest]>('requestInstanceRetirement');
export const drainSlotRequestSignal = defineSignal<[DrainSlotRequest]>('requestDrainSlot');
export const releaseDrainSlotSignal = defineSignal<[ReleaseDrainSlotRequest]>('releaseDrainSlot');
export const capacityStatusQuery = defineQuery<CapacityStatus>('status');

/** The answers, each to the workflow that asked. */
export const capacityAnswerSignal = defineSignal<[CapacityAnswer]>('capacityAnswer');
export const replacementAnswerSignal = defineSignal<[ReplacementAnswer]>('replacementAnswer');
export const retirementAnswerSignal = defineSignal<[RetirementAnswer]>('retirementAnswer');
export const drainSlotAnswerSignal = defineSignal<[DrainSlotAnswer]>('drainSlotAnswer');

/** The signals through which a capacity workflow answers: the only ones its sendAnswers activity may send. */
export const ANSWER_SIGNAL_NAMES = [capacityAnswerSignal.name, replacementAnswerSignal.name, retirementAnswerSignal.name, drainSlotAnswerSignal.name];

/** One answer of a capacity workflow to a waiting workflow. */
export interface WorkflowAnswer {
  workflowId: string;
  signalName: string;
  answer: CapacityAnswer | ReplacementAnswer | RetirementAnswer | DrainSlotAnswer;
}

// --- the one validation of each request ----------------------------------------------------------------------------

const MAX_WAIT_SECONDS = 24 * 3600;

/** Throws an Error naming the bad value and what is expected. */
export function validateIncreaseRequest(request: IncreaseCapacityRequest): void {
  requireObject(request, 'increase request');
  requireRequestId(request.requestId);
  const { coalesceSeconds, waiter } = request;
  if (coalesceSeconds !== undefined && (typeof coalesceSeconds !== 'number' || !(coalesceSeconds >= 0 && coalesceSeconds <= 60))) {
    throw new Error(`coalesceSeconds ${String(coalesceSeconds)} must be a number of seconds from 0 to 60`);
  }
  requireObject(waiter, 'waiter (the workflow to answer)');
  requireText(waiter.workflowId, 'waiter.workflowId');
  if (typeof waiter.waitSeconds !== 'number' || !(waiter.waitSeconds > 0 && waiter.waitSeconds <= MAX_WAIT_SECONDS)) {
    throw new Error(`waiter.waitSeconds ${String(waiter.waitSeconds)} must be more than 0 and at most ${MAX_WAIT_SECONDS}`);
  }
  if (typeof waiter.pollIntervalSeconds !== 'number' || !(waiter.pollIntervalSeconds >= 1 && waiter.pollIntervalSeconds <= 300)) {
    throw new Error(`waiter.pollIntervalSeconds ${String(waiter.pollIntervalSeconds)} must be from 1 to 300`);
  }
  if (request.forInstanceId !== undefined && !isInstanceId(request.forInstanceId)) {
    throw new Error(`forInstanceId "${String(request.forInstanceId)}" is not an EC2 instance id (expected i- and 8 or 17 hex digits)`);
  }
  if (waiter.fallbackFor !== undefined) {
    requireObject(waiter.fallbackFor, 'waiter.fallbackFor');
    requireText(waiter.fallbackFor.spotAsgName, 'waiter.fallbackFor.spotAsgName');
    requireText(waiter.fallbackFor.warnedNodeName, 'waiter.fallbackFor.warnedNodeName');
    if (!isInstanceId(waiter.fallbackFor.warnedInstanceId)) {
      throw new Error(`waiter.fallbackFor.warnedInstanceId "${String(waiter.fallbackFor.warnedInstanceId)}" is not an EC2 instance id (expected i- and 8 or 17 hex digits)`);
    }
  }
  if (waiter.drainSlot !== undefined) {
    try {
      validateDrainSlotRequest(waiter.drainSlot);
    } catch (error) {
      throw new Error(`waiter.drainSlot: ${(error as Error).message}`, { cause: error });
    }
  }
}

export function validateRetireRequest(request: RetireInstanceRequest): void {
  requireObject(request, 'retirement request');
  requireRequestId(request.requestId);
  if (!isInstanceId(request.instanceId)) {
    throw new Error(`instanceId "${String(request.instanceId)}" is not an EC2 instance id (expected i- and 8 or 17 hex digits)`);
  }
  if (typeof request.terminate !== 'boolean') throw new Error(`terminate "${String(request.terminate)}" must be true or false`);
  if (request.decrement !== undefined && typeof request.decrement !== 'boolean') {
    throw new Error(`decrement "${String(request.decrement)}" must be true or false`);
  }
  if (request.ifAbsent !== undefined && request.ifAbsent !== 'settle-books' && request.ifAbsent !== 'leave') {
    throw new Error(`ifAbsent "${String(request.ifAbsent)}" must be settle-books or leave`);
  }
  requireText(request.replyTo, 'replyTo (the workflow to answer)');
}

export function validateDrainSlotRequest(request: Omit<DrainSlotRequest, 'bypass'> & { bypass?: unknown }): void {
  requireObject(request, 'drain slot request');
  requireRequestId(request.requestId);
  for (const field of ['workflowId', 'instanceId', 'nodeName'] as const) requireText(request[field], field);
  const budget = request.budget as { nodes?: unknown; percent?: unknown } | undefined;
  const nodesOk = typeof budget?.nodes === 'number' && Number.isInteger(budget.nodes) && budget.nodes >= 1;
  const percentOk = typeof budget?.percent === 'number' && budget.percent > 0 && budget.percent <= 100;
  if (!nodesOk && !percentOk) {
    throw new Error(`budget ${JSON.stringify(request.budget)} must be { nodes: whole number >= 1 } or { percent: more than 0, at most 100 }`);
  }
  if (typeof request.leaseSeconds !== 'number' || !(request.leaseSeconds > 0)) {
    throw new Error(`leaseSeconds ${String(request.leaseSeconds)} must be a positive number of seconds`);
  }
  if (request.bypass !== undefined && typeof request.bypass !== 'boolean') throw new Error(`bypass ${JSON.stringify(request.bypass)} must be true or false`);
}

export function validateReleaseRequest(request: ReleaseDrainSlotRequest): void {
  requireObject(request, 'drain slot release');
  requireRequestId(request.requestId);
}

function requireObject(value: unknown, what: string): void {
  if (typeof value !== 'object' || value === null) throw new Error(`${what} ${JSON.stringify(value) ?? 'undefined'} is not an object`);
}

function requireRequestId(requestId: unknown): void {
  if (typeof requestId !== 'string' || requestId.length === 0 || requestId.length > 400) {
    throw new Error(`requestId "${String(requestId)}" must be a non-empty string of at most 400 characters`);
  }
}

function requireText(value: unknown, field: string): void {
  if (typeof value !== 'string' || value.length === 0) throw new Error(`${field} "${String(value)}" must be a non-empty string`);
}
