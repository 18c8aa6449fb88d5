// The monitor's activities and their options.
import { proxyActivities } from '@temporalio/workflow';
import type { SpotGuardActivities } from '../shared/activity-types.js';
import type { FlowSettings } from '../shared/settings.js';
import { withSummaries } from '../shared/user-metadata.js';

const retry = { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' };

/** Checks (reads only): one that fails counts as "not healthy" (or "not now") for this cycle; the next cycle looks again. */
export const checks = withSummaries(proxyActivities<SpotGuardActivities>({ startToCloseTimeout: '30 seconds', scheduleToCloseTimeout: '2 minutes', retry }));

/** Without its settings the monitor cannot do anything: wait for a worker as long as it takes. */
export const { loadSettings } = withSummaries(proxyActivities<SpotGuardActivities>({ startToCloseTimeout: '30 seconds', retry }));

/**
 * Scale-down steps. Their bounds follow the configured drain and reschedule timeouts; a step that keeps failing is
 * given up for this cycle and resumed, on the same node, in the next one.
 */
export function scaleDownStepsFor(settings: FlowSettings): SpotGuardActivities {
  const longest = Math.max(settings.drainTimeoutSeconds, settings.monitor.podRescheduleTimeoutSeconds);
  return withSummaries(proxyActivities<SpotGuardActivities>({
    startToCloseTimeout: `${longest + 60} seconds`,
    scheduleToCloseTimeout: `${longest + 600} seconds`,
    heartbeatTimeout: '1 minute',
    retry,
  }));
}
