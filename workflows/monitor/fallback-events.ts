// The fallback events the monitor tracks: which on-demand instances it launched for which warned node, which of them
// is next to go, and cleanup of the events with nothing left to do.
import type { GroupSnapshot } from '../shared/activity-types.js';
import { isTerminatingState } from '../shared/ids.js';
import { MAX_SCALE_DOWN_ATTEMPTS, type ScaleDownInFlight } from './api.js';
import { isoNow, type MonitorRun } from './run.js';

/** Events whose instance left the group become gone; closed events older than the cleanup age are forgotten. */
export function closeAndForgetEvents(run: MonitorRun, onDemand: GroupSnapshot): void {
  const { state, settings } = run;
  const present = new Set(onDemand.instances.filter((i) => !isTerminatingState(i.lifecycleState)).map((i) => i.instanceId));
  for (const event of state.events) {
    if (event.state === 'tracked' && !present.has(event.onDemandInstanceId) && state.inFlight?.instanceId !== event.onDemandInstanceId) {
      event.state = 'gone';
      event.closedAt = isoNow();
      run.note(`on-demand fallback ${event.onDemandInstanceId} left the group without Spot Guard`);
    }
  }
  const horizon = Date.now() - settings.monitor.cleanupAfterSeconds * 1000;
  state.events = state.events.filter((e) => e.state === 'tracked' || Date.parse(e.closedAt ?? '') > horizon);
}

/**
 * The oldest fallback instance still InService that has itself been up for the stability window (a fresh one may
 * still be taking the warned node's pods) and whose warned spot instance has left the spot group; others only when
 * configured to. Never below the group's MinSize. Nothing to remove: no safety verdict, or why a fallback is kept.
 */
export function pickCandidate(run: MonitorRun, onDemand: GroupSnapshot): ScaleDownInFlight | undefined {
  const { state, settings } = run;
  state.lastSafety = undefined; // a verdict is about this cycle's candidate
  if (onDemand.desiredCapacity <= onDemand.minSize) {
    if (state.events.some((e) => e.state === 'tracked')) run.note(`on-demand group at its MinSize (${onDemand.minSize}): nothing to remove`);
    return undefined;
  }
  const settledBefore = Date.now() - settings.monitor.stabilityWindowSeconds * 1000;
  const inService = new Set(onDemand.instances.filter((i) => i.lifecycleState === 'InService').map((i) => i.instanceId));
  const tracked = state.events
    .filter((e) => e.state === 'tracked' && inService.has(e.onDemandInstanceId))
    .filter((e) => (e.failedAttempts ?? 0) < MAX_SCALE_DOWN_ATTEMPTS && Date.parse(e.launchedAt) <= settledBefore)
    .sort((a, b) => a.launchedAt.localeCompare(b.launchedAt));
  // A fallback stands in for its warned instance while that one is still in the spot group: waiting for a drain slot,
  // or held. The spot group's members come with the cycle's health check, so knowing costs no call of its own.
  const free = tracked.find((e) => run.spotMembers?.has(e.warnedInstanceId) !== true);
  if (free) return newScaleDown(free.onDemandInstanceId, true);
  if (tracked[0]) {
    const { onDemandInstanceId, warnedInstanceId, warnedNodeName } = tracked[0];
    const reason = `kept while the spot instance it stands in for, ${warnedInstanceId} (${warnedNodeName}), is still in "${run.spotAsgName}"`;
    state.lastSafety = { at: isoNow(), instanceId: onDemandInstanceId, safe: false, reason };
    return undefined;
  }
  if (!settings.monitor.removeUnlaunchedOnDemand) return undefined;
  const known = new Set(state.events.map((e) => e.onDemandInstanceId));
  const other = [...inService].find((id) => !known.has(id));
  return other ? newScaleDown(other, false) : undefined;
}

function newScaleDown(instanceId: string, launchedBySpotGuard: boolean): ScaleDownInFlight {
  return { instanceId, launchedBySpotGuard, step: 'draining', startedAt: isoNow(), attempts: 0, owners: [] };
}

