// One test's world: fake AWS groups, a fake Kubernetes API server, the real activities over them, and a worker on a
// task queue of its own against the test's own time-skipping test server.
import type { Client } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities, fixedPairs } from '../../activities/index.js';
import { loadConfig } from '../../worker/config.js';
import type { FallbackReport } from '../../workflows/monitor/api.js';
import type { FlowSettings } from '../../workflows/shared/settings.js';
import { FakeAutoScaling } from '../fakes/auto-scaling.js';
import { FakeKubernetesApi } from '../fakes/kubernetes-api.js';
import { workflowBundle } from './temporal.js';

let harnessCounter = 0;

/** The worker's real defaults (10 s polls, 120 s timeouts, ...), from the same loader the worker uses. */
export function defaultFlowSettings(spot: string, onDemand: string, overrides: Record<string, string> = {}): FlowSettings {
  const loaded = loadConfig({ SPOT_ASG_NAME: spot, ON_DEMAND_ASG_NAME: onDemand, ...overrides });
  if (!loaded.ok) throw new Error(loaded.errors.join('; '));
  return loaded.config.flow;
}

export class Harness {
  readonly aws = new FakeAutoScaling();
  readonly k8s = new FakeKubernetesApi();
  private readonly id = ++harnessCounter;
  readonly taskQueue = `spot-guard-test-${process.pid}-${this.id}`;
  // Group names of their own: capacity workflows are keyed by group and outlive a test's worker.
  readonly spot = `spot-asg-${this.id}`;
  readonly onDemand = `on-demand-asg-${this.id}`;
  settings: FlowSettings = defaultFlowSettings(this.spot, this.onDemand);
  /** The one pair this harness protects, as the shorthand SPOT_ASG_NAME / ON_DEMAND_ASG_NAME would. */
  readonly pairs = fixedPairs([{ spotAsgName: this.spot, onDemandAsgName: this.onDemand }], 'SPOT_ASG_NAME and ON_DEMAND_ASG_NAME');
  /**
   * Fallback reports sent to the revert-to-spot monitor. Unless `startMonitor` is set, they are only recorded, so a
   * rebalance test sees what was reported without a monitor acting on its groups.
   */
  readonly fallbackReports: FallbackReport[] = [];
  startMonitor = false;
  /** The worker's SPOT_GUARD_DRY_RUN: the activities log changes instead of making them. */
  dryRun = false;
  /** The Temporal client the activities use (signals to capacity workflows, answers); the environment's by default. */
  activityClient?: Client;
  /** Activities to run instead of the real ones (a step that takes its time, say). */
  activityOverrides: Partial<ReturnType<typeof createActivities>> = {};
  /** The real activities of the latest worker, for an override that only fails for a while and then hands over. */
  real?: ReturnType<typeof createActivities>;
  /** Options of the workers this harness creates (a connection of their own, an identity), beyond its task queue, bundle and activities. */
  workerOptions: Partial<Omit<WorkerOptions, 'taskQueue' | 'activities' | 'workflowBundle' | 'workflowsPath'>> = {};

  constructor(readonly env: TestWorkflowEnvironment) {}

  async start(): Promise<this> {
    await this.k8s.start();
    // New instances join the cluster as Ready nodes, as kubelet would register them.
    this.aws.onInService = (instanceId) => this.k8s.addNode({ name: `node-${instanceId.slice(2)}`, instanceId });
    return this;
  }

  async stop(): Promise<void> {
    await this.k8s.stop();
  }

  async worker(): Promise<Worker> {
    const activities = createActivities({
      autoScaling: this.aws.client,
      kubernetes: this.k8s.coreApi(),
      kubernetesPolicy: this.k8s.policyApi(),
      temporal: this.activityClient ?? this.env.client,
      taskQueue: this.taskQueue,
      settings: this.settings,
      pairs: this.pairs,
      // One group per harness: nothing to batch its polls with, and no real-time wait inside a time-skipping test.
      pollBatchWindowMs: 0,
      dryRun: this.dryRun,
      evictionRetrySeconds: 0.05,
    });
    this.real = activities;
    const reportFallbackToMonitor = activities.reportFallbackToMonitor;
    return Worker.create({
      connection: this.env.nativeConnection,
      ...this.workerOptions,
      taskQueue: this.taskQueue,
      workflowBundle: await workflowBundle(),
      activities: {
        ...activities,
        reportFallbackToMonitor: async (input: Parameters<typeof reportFallbackToMonitor>[0]) => {
          this.fallbackReports.push(input.report);
          if (this.startMonitor) await reportFallbackToMonitor(input);
        },
        ...this.activityOverrides,
      },
    });
  }

  /** Runs `fn` while a worker serves this harness's task queue. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const worker = await this.worker();
    return worker.runUntil(fn);
  }
}
