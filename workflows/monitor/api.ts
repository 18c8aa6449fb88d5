// The revert-to-spot monitor's interface: fallback reports from rebalance workflows, its state (carried across
// continue-as-new), the status an operator queries, and the signals to pause, resume or check now.
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { PodOwner } from '../shared/activity-types.js';

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
  /**
   * Scale-downs of it given up for a reason of its own (drain or rescheduling failed, turned unsafe halfway, MinSize
   * reached, past the time limit; spot's health does not count); at MAX_SCALE_DOWN_ATTEMPTS it is left to the operator.
   */
  failedAttempts?: number;
  /** When and why its latest scale-down was given up. */
  lastGivenUp?: string;
}

/**
 * A fallback instance whose scale-down failed this often is no longer picked (its event says so); a drain that stays
 * incomplete this many times gives its scale-down up. The time limit bounds a scale-down whatever holds it.
 */
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
  /** releasing: given up (see `givenUp`), its node still to be released; a failed release is tried again next cycle. */
  step: 'draining' | 'awaiting-pods' | 'terminating' | 'releasing';
  startedAt: string;
  /** When it is given up, whatever holds it (set when it starts changing the node). */
  giveUpAt?: string;
  attempts: number;
  /** Controllers of the pods moved away, to see them running elsewhere. */
  owners: PodOwner[];
  /** Whether Spot Guard cordoned the node (false: it was cordoned already): only its own cordon is undone. */
  cordonedBySpotGuard?: boolean;
  /** Why it was given up (step releasing). */
  givenUp?: string;
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

export type MonitorPhase = 'paused' | 'waiting-for-health' | 'waiting-for-stability' | 'idle' | 'blocked' | 'scaling-down';

export interface MonitorStatus extends MonitorState {
  spotAsgName: string;
  onDemandAsgName: string;
  /** When the healthy streak will have lasted the stability window. */
  stableAt?: string;
  phase: MonitorPhase;
}

export interface PauseRequest {
  reason: string;
}

export const fallbackLaunchedSignal = defineSignal<[FallbackReport]>('fallbackLaunched');
export const pauseMonitorSignal = defineSignal<[PauseRequest]>('pause');
export const resumeMonitorSignal = defineSignal<[]>('resume');
export const checkNowSignal = defineSignal<[]>('checkNow');
export const monitorStatusQuery = defineQuery<MonitorStatus>('status');
