import type { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import type { Client } from '@temporalio/client';
import type { SpotGuardActivities } from '../workflows/shared/activity-types.js';
import type { FlowSettings } from '../workflows/shared/settings.js';
import { type Announcer, createAnnounceActivities } from './announce.js';
import { createAutoScalingActivities } from './auto-scaling.js';
import { DomainMetrics } from './domain-metrics.js';
import { createCapacityRequestActivities } from './capacity-requests.js';
import { createKubernetesActivities, type KubernetesCoreApi } from './kubernetes.js';
import { createMonitorRequestActivities } from './monitor-requests.js';
import type { NodeWatch } from './node-watch.js';
import { createProtectedPairActivities } from './protected-instance.js';
import type { ProtectedPairs } from './protected-pairs.js';
import { createScaleDownSafetyActivities, type KubernetesPolicyApi } from './scale-down-safety.js';
import { createSettingsActivities } from './settings.js';
import { createSurplusActivities } from './surplus.js';
import { createWebhookActivities, type WebhookConfig } from './webhook.js';

export * from './announce.js';
export * from './auto-scaling.js';
export * from './domain-metrics.js';
export * from './capacity-requests.js';
export * from './kubernetes.js';
export * from './monitor-requests.js';
export * from './protected-instance.js';
export * from './protected-pairs.js';
export * from './scale-down-safety.js';
export * from './settings.js';
export * from './surplus.js';
export * from './webhook.js';

export interface ActivityDependencies {
  autoScaling: AutoScalingClient;
  kubernetes: KubernetesCoreApi;
  kubernetesPolicy: KubernetesPolicyApi;
  temporal: Client;
  taskQueue: string;
  /** Task queue of the per-group workflows (capacity, monitor); the worker's own queue when not given. */
  groupTaskQueue?: string;
  settings: FlowSettings;
  /** The spot/on-demand pairs protected (a fixed list, or found by tags). */
  pairs: ProtectedPairs;
  dryRun?: boolean;
  evictionRetrySeconds?: number;
  /** How long a group poll waits for other groups' polls to share its read; default 400 ms (tests on skipped time: 0). */
  pollBatchWindowMs?: number;
  /** The worker's watch on nodes; without it the node lookups list the nodes (shared within a second). */
  nodeWatch?: NodeWatch;
  /** Where announced steps go (Events, metrics, webhook); default: metrics into nothing, no Events. */
  announcer?: Announcer;
  /** The webhook's endpoint, for postWebhook; none: messages still queued are dropped. */
  webhook?: WebhookConfig;
}

/** Every activity of Spot Guard, built over the clients the caller hands in. */
export function createActivities(deps: ActivityDependencies): SpotGuardActivities {
  const announcer = deps.announcer ?? { metrics: new DomainMetrics() };
  const autoScaling = createAutoScalingActivities(deps.autoScaling, { dryRun: deps.dryRun, pollBatchWindowMs: deps.pollBatchWindowMs });
  const kubernetes = createKubernetesActivities(deps.kubernetes, {
    dryRun: deps.dryRun,
    evictionRetrySeconds: deps.evictionRetrySeconds,
    nodeWatch: deps.nodeWatch,
    onEvictionRefused: () => announcer.metrics.evictionRefused({}),
  });
  return {
    ...createSettingsActivities(deps.settings),
    ...autoScaling,
    ...kubernetes,
    ...createScaleDownSafetyActivities(deps.kubernetes, deps.kubernetesPolicy, { pollSeconds: deps.evictionRetrySeconds }),
    ...createCapacityRequestActivities(deps.temporal, deps.groupTaskQueue ?? deps.taskQueue),
    ...createMonitorRequestActivities(deps.temporal, deps.groupTaskQueue ?? deps.taskQueue),
    ...createProtectedPairActivities(deps.autoScaling, deps.pairs),
    // Rebalance runs live on the per-node queue.
    ...createSurplusActivities({ temporal: deps.temporal, taskQueue: deps.taskQueue, autoScaling, kubernetes }),
    ...createAnnounceActivities(announcer),
    ...createWebhookActivities(deps.webhook, announcer.metrics),
  };
}

export type { SpotGuardActivities } from '../workflows/shared/activity-types.js';
