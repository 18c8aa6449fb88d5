// One test's world: fake AWS groups, a fake Kubernetes API server, the real activities over them, and a worker on a
// task queue of its own against the shared time-skipping test server.
import { WorkflowNotFoundError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { createActivities } from '../../activities/index.js';
import { loadConfig } from '../../worker/config.js';
import { capacityWorkflowId, type FallbackReport, type FlowSettings, monitorWorkflowId } from '../../workflows/definitions.js';
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
  /**
   * Fallback reports sent to the revert-to-spot monitor. Unless `startMonitor` is set, they are only recorded: a
   * monitor started at the end of a rebalance test and terminated with an activity in flight would leave the
   * time-skipping server's clock locked for the next test.
   */
  readonly fallbackReports: FallbackReport[] = [];
  startMonitor = false;

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

  /**
   * Ends the long-lived workflows this test's groups caused (capacity workflows, the monitor) while the worker still
   * runs: left behind with a timer or an activity in flight, they would hold the time-skipping server back in the next
   * test.
   */
  private async endEntityWorkflows(): Promise<void> {
    const ids = [capacityWorkflowId(this.spot), capacityWorkflowId(this.onDemand), monitorWorkflowId(this.spot, this.onDemand)];
    await Promise.all(
      ids.map((id) =>
        this.env.client.workflow
          .getHandle(id)
          .terminate('test finished')
          .catch((error: unknown) => {
            if (!(error instanceof WorkflowNotFoundError)) throw error;
          }),
      ),
    );
  }

  async worker(): Promise<Worker> {
    const activities = createActivities({
      autoScaling: this.aws.client,
      kubernetes: this.k8s.coreApi(),
      kubernetesPolicy: this.k8s.policyApi(),
      temporal: this.env.client,
      taskQueue: this.taskQueue,
      settings: this.settings,
      evictionRetrySeconds: 0.05,
    });
    const reportFallbackToMonitor = activities.reportFallbackToMonitor;
    return Worker.create({
      connection: this.env.nativeConnection,
      taskQueue: this.taskQueue,
      workflowBundle: await workflowBundle(),
      activities: {
        ...activities,
        reportFallbackToMonitor: async (input: Parameters<typeof reportFallbackToMonitor>[0]) => {
          this.fallbackReports.push(input.report);
          if (this.startMonitor) await reportFallbackToMonitor(input);
        },
      },
    });
  }

  /** Runs `fn` while a worker serves this harness's task queue. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const worker = await this.worker();
    return worker.runUntil(async () => {
      try {
        return await fn();
      } finally {
        await this.endEntityWorkflows();
      }
    });
  }
}
