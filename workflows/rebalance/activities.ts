// The rebalance workflow's activities and their options. The short steps (settings, verification, requests to the
// capacity workflow, taint, cordon, giving a drain slot back) run as local activities: inside the workflow task that
// reaches them, without a round trip through the server's activity queue each. A wave starts hundreds of workflows at
// once and the server's writes are what it waits on; the steps are as retried, as idempotent and as visible in the UI.
// The long waits (a node turning Ready, the drain) are ordinary activities that heartbeat.
import { proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type { SpotGuardActivities } from '../shared/activity-types.js';
import type { FlowSettings } from '../shared/settings.js';
import { withSummaries } from '../shared/user-metadata.js';

const retry = { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' };

// No overall deadline: an API that is down for a while is retried until it answers (the pending activity, its attempt
// count and last error are visible in the UI); input that can never succeed fails at once, non-retryable.
const plainOptions = { startToCloseTimeout: '30 seconds', retry } as const;

export const { loadSettings, verifyNode, verifyProtectedInstance, taintNode, cordonNode, releaseNode } = withSummaries(proxyLocalActivities<SpotGuardActivities>(plainOptions));

// A request may queue behind others of the same group; it is retried until the capacity workflow has it.
export const { requestCapacityIncrease, requestDrainSlot, requestInstanceRetirement } = withSummaries(proxyLocalActivities<SpotGuardActivities>({
  startToCloseTimeout: '2 minutes',
  retry,
}));

/** Tried for a minute at most: the slot's lease frees it anyway, and the workflow should not wait on it. */
export const { releaseDrainSlot } = withSummaries(proxyLocalActivities<SpotGuardActivities>({
  startToCloseTimeout: '20 seconds',
  scheduleToCloseTimeout: '1 minute',
  retry,
}));

export const { reportFallbackToMonitor } = withSummaries(proxyActivities<SpotGuardActivities>(plainOptions));

/** The node-Ready look inside the workflow task that got the replacement's answer: long enough for a node registering. */
export const NODE_READY_QUICK_LOOK_MS = 5_000;
export const { awaitNodeReady: quickNodeReadyLook } = withSummaries(proxyLocalActivities<SpotGuardActivities>({
  startToCloseTimeout: `${NODE_READY_QUICK_LOOK_MS / 1000 + 10} seconds`,
  scheduleToCloseTimeout: `${NODE_READY_QUICK_LOOK_MS / 1000 + 30} seconds`,
  retry,
}));

/** Waits for a node to turn Ready, looking at the worker's node watch once a second and heartbeating. */
export function awaitNodeReadyFor(settings: FlowSettings): SpotGuardActivities['awaitNodeReady'] {
  return withSummaries(proxyActivities<SpotGuardActivities>({
    startToCloseTimeout: `${settings.nodeReadyTimeoutSeconds + 30} seconds`,
    scheduleToCloseTimeout: `${settings.nodeReadyTimeoutSeconds + 90} seconds`,
    heartbeatTimeout: '30 seconds',
    retry,
  })).awaitNodeReady;
}

/**
 * The drain. No attempt limit: the absolute deadline in its input already bounds it, whatever happens to the worker or
 * the API meanwhile.
 */
export function evictPodsFor(settings: FlowSettings): SpotGuardActivities['evictPods'] {
  return withSummaries(proxyActivities<SpotGuardActivities>({
    startToCloseTimeout: `${settings.drainTimeoutSeconds + 60} seconds`,
    scheduleToCloseTimeout: `${settings.drainTimeoutSeconds + 300} seconds`,
    heartbeatTimeout: '30 seconds',
    retry,
  })).evictPods;
}
