// The 30 s check and the 2-minute stability: is the spot group healthy now (InService == desired, nothing on its way
// in or out, no scaling in progress, no failure since the last check, every spot node Ready), and has it been healthy
// without a break for the stability window? The streak's start is kept in workflow state across restarts and runs.
import { rootMessage } from '../shared/failures.js';
import { checks } from './activities.js';
import type { HealthCheck, MonitorState } from './api.js';
import type { MonitorRun } from './run.js';

/** When an unbroken healthy streak reaches the window, or undefined without a streak. */
export function stableAt(state: Pick<MonitorState, 'healthySince'>, stabilityWindowSeconds: number): number | undefined {
  return state.healthySince ? Date.parse(state.healthySince) + stabilityWindowSeconds * 1000 : undefined;
}

/**
 * Moves the healthy streak by one check: an unhealthy check ends it; a healthy one starts it, or starts it again when
 * the previous check is too long ago (a worker outage, a long scale-down: time nobody looked at is no proof).
 */
export function updateHealthyStreak(state: MonitorState, check: HealthCheck, checkIntervalSeconds: number): 'broken' | 'started' | 'continued' | 'none' {
  const previous = state.lastCheck;
  state.lastCheck = check;
  const unobserved = previous !== undefined && Date.parse(check.at) - Date.parse(previous.at) > 3 * checkIntervalSeconds * 1000;
  if (!check.healthy) {
    const had = state.healthySince !== undefined;
    state.healthySince = undefined;
    return had ? 'broken' : 'none';
  }
  if (unobserved || state.healthySince === undefined) {
    state.healthySince = check.at;
    return 'started';
  }
  return 'continued';
}

/** The spot group's health now, with every reason it is not healthy. */
export async function checkSpotHealth(run: MonitorRun): Promise<HealthCheck> {
  const { state, settings } = run;
  const at = new Date().toISOString();
  try {
    const health = await checks.describeGroupHealth({ asgName: run.spotAsgName, since: state.failuresCountedSince });
    const reasons: string[] = [];
    if (health.inService.length !== health.desiredCapacity) reasons.push(`${health.inService.length} of ${health.desiredCapacity} desired instances InService`);
    if (health.notInService.length > 0) reasons.push(`instances not InService: ${health.notInService.join(', ')}`);
    if (health.activitiesInProgress.length > 0) reasons.push(`scaling in progress: ${health.activitiesInProgress.join(', ')}`);
    if (health.failuresSince.length > 0) reasons.push(`scaling failed since the last check: ${health.failuresSince.join('; ')}`);
    // Nodes Spot Guard is draining itself (recognised by its taints) are left out.
    const nodes = await checks.findUnreadyNodes({ instanceIds: health.inService, ignoreTaintKeys: [settings.taint.key, settings.monitor.scaleDownTaint.key] });
    reasons.push(...nodes.unready);
    state.failuresCountedSince = at;
    run.spotMembers = new Set(health.members);
    return { at, healthy: reasons.length === 0, reasons };
  } catch (error) {
    run.spotMembers = undefined;
    return { at, healthy: false, reasons: [`could not check the spot group: ${rootMessage(error)}`] };
  }
}
