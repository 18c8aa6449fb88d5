// The rebalance run's current details, as the Temporal UI shows them: what it waits for now, in a line or two, from its
// status alone (no clock, no I/O: the same status gives the same text, in a replay too).
import type { FlowSettings } from '../shared/settings.js';
import type { RebalancePhase, RebalanceStatus, ScaleAttempt } from './api.js';

type Shown = Pick<RebalanceStatus, 'phase' | 'capacityPhase' | 'instanceId' | 'nodeName' | 'spot' | 'onDemand' | 'replacement' | 'replacementInstanceId' | 'drainSlot' | 'drain' | 'interruption' | 'drainRequest' | 'instanceFate'>;

/** The first line: the step the run is at; the second: the replacement capacity while it runs beside the drain. */
export function rebalanceDetails(status: Shown, settings: FlowSettings | undefined): string {
  const lines = [phaseLine[status.phase](status, settings)];
  const capacity = capacityLine(status, settings);
  if (capacity && status.phase !== 'adding-capacity') lines.push(`meanwhile: ${capacity}`);
  else if (capacity) lines[0] = capacity;
  if (status.interruption) lines.push(`interruption notice: ${status.interruption.action} at ${status.interruption.time}`);
  else if (status.drainRequest) lines.push(`drainNow: ${status.drainRequest.reason}`);
  return lines.join('\n');
}

const group = (status: Shown): string => status.spot.asgName || 'the spot group';

const phaseLine: Record<RebalancePhase, (status: Shown, settings: FlowSettings | undefined) => string> = {
  verifying: (s) => `verifying that node ${s.nodeName} is ${s.instanceId}${s.spot.asgName ? ` in ${s.spot.asgName}` : ''}`,
  'adding-capacity': (s) => `adding replacement capacity to ${group(s)}`,
  tainting: (s) => `tainting node ${s.nodeName}`,
  holding: (s) =>
    `held for lack of capacity (${attemptFailures(s)}): node ${s.nodeName} tainted, its pods stay until a late replacement, an interruption notice or drainNow`,
  'awaiting-drain-slot': (s) => `waiting for a drain slot of ${group(s)}'s disruption budget${s.drainSlot?.position === undefined ? '' : ` (position ${s.drainSlot.position})`}`,
  // The drain's progress (pods evicted, left, refused by a PodDisruptionBudget) is its activity's heartbeat, shown beside.
  draining: (s, settings) =>
    `draining node ${s.nodeName}: evicting its pods, PodDisruptionBudgets respected${settings ? `, for up to ${settings.drainTimeoutSeconds} s` : ''} (pods left and refusals: the evictPods activity's heartbeat)`,
  'retiring-instance': (s) => `terminating ${s.instanceId} with decrement through the capacity workflow of ${group(s)}`,
  'awaiting-reclaim': (s, settings) => `waiting for AWS to reclaim ${s.instanceId}${settings ? ` (looked at every ${settings.reclaimPollSeconds} s, for up to ${settings.reclaimWaitSeconds} s)` : ''}${drainLeft(s)}`,
  done: (s) => `done: replacement ${s.replacement ?? 'none'}${s.replacementInstanceId ? ` ${s.replacementInstanceId}` : ''}, instance ${s.instanceFate ?? 'unknown'}`,
  failed: (s) => `rejected, nothing changed: ${s.instanceId} on node ${s.nodeName}`,
};

/** What the last drain left on the node: pods a PodDisruptionBudget refused (or still terminating), pods kept on purpose. */
function drainLeft(s: Shown): string {
  if (!s.drain || s.drain.complete) return '';
  return `; the last drain left ${s.drain.remaining.length} pod(s) a PodDisruptionBudget refused or still terminating and kept ${s.drain.left.length}, tried again while the instance stays`;
}

function attemptFailures(s: Shown): string {
  const failures = [`spot: ${s.spot.failure ?? 'no instance'}`];
  if (s.onDemand) failures.push(`on-demand: ${s.onDemand.failure ?? 'no instance'}`);
  return failures.join('; ');
}

/** The replacement-capacity branch, while it waits for something. */
function capacityLine(s: Shown, settings: FlowSettings | undefined): string | undefined {
  const poll = settings ? `, polled every ${settings.asgPollIntervalSeconds} s` : '';
  switch (s.capacityPhase) {
    case 'scaling-spot':
      return `asking the capacity workflow of ${group(s)} for spot +1`;
    case 'waiting-for-spot':
      return `waiting for the spot +1 instance of ${group(s)} to be InService (${raised(s.spot)}${poll}${settings ? `, up to ${settings.capacityCheckTimeoutSeconds} s` : ''})`;
    case 'scaling-on-demand':
      return `falling back to on-demand (${s.spot.failure ?? 'spot failed'}): asking the capacity workflow of ${s.onDemand?.asgName ?? 'the on-demand group'} for +1`;
    case 'waiting-for-on-demand':
      return `falling back to on-demand (${s.spot.failure ?? 'spot failed'}): waiting for the +1 instance of ${s.onDemand?.asgName ?? 'the on-demand group'} to be InService (${raised(s.onDemand)}${poll})`;
    case 'waiting-for-node-ready':
      return `waiting for the node of ${s.replacement ?? ''} replacement ${s.replacementInstanceId ?? ''} to be Ready`;
    default:
      return undefined;
  }
}

const raised = (attempt: ScaleAttempt | undefined): string =>
  attempt?.desiredTarget === undefined ? 'desired raised' : `desired ${attempt.desiredBefore ?? '?'} → ${attempt.desiredTarget}`;
