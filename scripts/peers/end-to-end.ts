// The whole system on real peers for end-to-end tests: the Temporal dev server, moto behind our launcher, the
// Kubernetes stack, and the real worker process (`node dist/worker/main.js`) configured only through its environment.
// A kubelet stand-in registers a kwok node for every instance moto launches, as a real node would join the cluster.
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type AutoScalingClient,
  CreateAutoScalingGroupCommand,
  CreateLaunchConfigurationCommand,
  DescribeAutoScalingGroupsCommand,
} from '@aws-sdk/client-auto-scaling';
import type { CoreV1Api } from '@kubernetes/client-node';
import { Client, Connection } from '@temporalio/client';
import type { DevServerSettings } from '../../worker/config.js';
import { type DevServer, startDevServer } from '../../worker/dev-server.js';
import { WORKER_LAUNCH_ENV, WORKER_NODE_FLAGS } from '../../worker/memory.js';
import { AwsLauncher } from './aws-launcher.js';
import { startDevServerOnFreePorts } from './dev-server.js';
import { KubernetesStack, type KubernetesStackOptions, KWOK_ANNOTATION } from './kubernetes-stack.js';
import { samplesOf } from './prometheus.js';
import { stopOnExit } from './stop-on-exit.js';
import { until } from './wait.js';

const workerMain = fileURLToPath(new URL('../../worker/main.js', import.meta.url));

export const SPOT = 'e2e-spot';
export const ON_DEMAND = 'e2e-on-demand';
export const TASK_QUEUE = 'spot-guard';

export interface GroupView {
  desired: number;
  instances: { id: string; state: string }[];
}

export class EndToEnd {
  readonly aws = new AwsLauncher();
  readonly k8s: KubernetesStack;
  private readonly dir = mkdtempSync(join(tmpdir(), 'spot-guard-e2e-'));
  private temporal?: DevServer;
  private connection?: Connection;
  private worker?: WorkerProcess;
  private readonly otherWorkers: WorkerProcess[] = [];
  private kubelet?: NodeJS.Timeout;
  /** The groups whose InService instances the kubelet stand-in registers as nodes. */
  private kubeletGroups: string[] = [SPOT, ON_DEMAND];
  autoScaling!: AutoScalingClient;
  core!: CoreV1Api;
  client!: Client;

  private temporalSettings?: DevServerSettings;

  constructor(kubernetes: KubernetesStackOptions = {}) {
    this.k8s = new KubernetesStack(kubernetes);
  }

  async start(): Promise<this> {
    // A database file: the dev server can be restarted mid-flow and keep every workflow.
    const [{ server: temporal, settings }] = await Promise.all([
      startDevServerOnFreePorts(join(this.dir, 'temporal.sqlite')),
      this.aws.start(),
      this.k8s.start(),
    ]);
    this.temporalSettings = settings;
    this.temporal = temporal;
    this.connection = await Connection.connect({ address: temporal.address });
    this.client = new Client({ connection: this.connection });
    this.autoScaling = this.aws.client();
    this.core = this.k8s.coreApi();
    return this;
  }

  /**
   * The dev server's writes to its store so far, by persistence operation, from its own metrics: each workflow
   * update (a signal, a task started or completed, a heartbeat) is one UpdateWorkflowExecution.
   */
  async temporalWrites(): Promise<Record<string, number>> {
    const text = await (await fetch(`http://127.0.0.1:${this.temporalSettings?.metricsPort}/metrics`)).text();
    const writes: Record<string, number> = {};
    for (const { labels, value } of samplesOf(text, 'persistence_requests')) {
      const { operation } = labels;
      if (operation && /^(Create|Update|Delete|Upsert|Record)/.test(operation)) writes[operation] = (writes[operation] ?? 0) + value;
    }
    return writes;
  }

  /** Stops the Temporal dev server and starts it again on the same port and database. */
  async restartTemporal(downForMs: number): Promise<void> {
    await this.temporal?.stop();
    await new Promise((resolve) => setTimeout(resolve, downForMs));
    this.temporal = await startDevServer(this.temporalSettings as DevServerSettings, 'default', () => undefined);
  }

  /** SIGKILL: the worker dies mid-step, with no chance to finish or report anything. */
  killWorker(): void {
    this.worker?.kill();
  }

  async stop(): Promise<void> {
    clearInterval(this.kubelet);
    await Promise.all([this.stopWorker(), ...this.otherWorkers.map((worker) => worker.stop())]);
    await this.connection?.close();
    await Promise.all([this.temporal?.stop(), this.aws.stop(), this.k8s.stop()]);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /**
   * Fresh groups and cluster contents for a scenario: spot with `spot` instances, on-demand empty. Spot Guard's
   * long-lived workflows of the previous scenario are ended first: their books and late watches were about groups
   * that are recreated here under the same names, as no real account does.
   */
  async groups(spot: number): Promise<string[]> {
    await this.createGroups([{ name: SPOT, desired: spot }, { name: ON_DEMAND, desired: 0 }]);
    return (await this.group(SPOT)).instances.map((i) => i.id);
  }

  /** Fresh groups of one's own (with their tags), the only ones in moto, their instances registered as nodes. */
  async createGroups(groups: { name: string; desired: number; tags?: Record<string, string> }[]): Promise<void> {
    await this.endRunningWorkflows();
    await this.aws.reset();
    await this.autoScaling.send(new CreateLaunchConfigurationCommand({ LaunchConfigurationName: 'nodes', ImageId: 'ami-12c6146b', InstanceType: 'm5.large' }));
    for (const { name, desired, tags = {} } of groups) {
      const Tags = Object.entries(tags).map(([Key, Value]) => ({ Key, Value, ResourceId: name, ResourceType: 'auto-scaling-group', PropagateAtLaunch: false }));
      await this.autoScaling.send(
        new CreateAutoScalingGroupCommand({ AutoScalingGroupName: name, LaunchConfigurationName: 'nodes', MinSize: 0, MaxSize: 6, DesiredCapacity: desired, AvailabilityZones: ['us-east-1a'], Tags }),
      );
    }
    this.kubeletGroups = groups.map((g) => g.name);
    await this.syncNodes();
    clearInterval(this.kubelet);
    this.kubelet = setInterval(() => void this.syncNodes().catch(() => undefined), 500);
  }

  /** Fresh groups (spot with two instances), and an application pod on the node of the first, once it has joined. */
  async spotNodeWithPod(): Promise<{ atRisk: string; nodeName: string; pod: string }> {
    const [atRisk] = (await this.groups(2)) as [string];
    const nodeName = EndToEnd.nodeName(atRisk);
    await until('the at-risk node', async () => (await this.core.readNode({ name: nodeName })).metadata?.name === nodeName);
    const pod = `web-${atRisk.slice(-6)}`;
    await this.pod(nodeName, pod);
    return { atRisk, nodeName, pod };
  }

  private async endRunningWorkflows(): Promise<void> {
    for await (const workflow of this.client.workflow.list({ query: 'ExecutionStatus="Running"' })) {
      await this.client.workflow.getHandle(workflow.workflowId, workflow.runId).terminate('a new end-to-end scenario').catch(() => undefined);
    }
  }

  async group(name: string): Promise<GroupView> {
    const output = await this.autoScaling.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [name] }));
    const group = output.AutoScalingGroups?.[0];
    return {
      desired: group?.DesiredCapacity ?? 0,
      instances: (group?.Instances ?? []).map((i) => ({ id: i.InstanceId as string, state: i.LifecycleState as string })),
    };
  }

  static nodeName(instanceId: string): string {
    return `ip-${instanceId.slice(2)}`;
  }

  /**
   * The kubelet stand-in: every InService instance gets a kwok node. Nodes of instances that left are kept (a cloud
   * controller removes them only later), so tests can still read how Spot Guard left them.
   */
  async syncNodes(): Promise<void> {
    // Read from moto directly: the stand-in's looks are not Auto Scaling requests of Spot Guard and are not counted.
    const instances = (await Promise.all(this.kubeletGroups.map((group) => this.aws.instances(group)))).flatMap((group) => group.instances);
    const nodes = await this.core.listNode({});
    const existing = new Set(nodes.items.map((n) => n.metadata?.name));
    for (const instance of instances.filter((i) => i.state === 'InService')) {
      const name = EndToEnd.nodeName(instance.id);
      if (existing.has(name)) continue;
      await this.registerNode(instance.id).catch(() => undefined);
    }
  }

  /** A Ready kwok node for an instance, as its kubelet would register it. */
  async registerNode(instanceId: string): Promise<void> {
    await this.core.createNode({
      body: {
        metadata: { name: EndToEnd.nodeName(instanceId), annotations: { [KWOK_ANNOTATION]: 'fake' } },
        spec: { providerID: `aws:///us-east-1a/${instanceId}` },
        status: { allocatable: { cpu: '4', memory: '16Gi', pods: '110' }, capacity: { cpu: '4', memory: '16Gi', pods: '110' } },
      },
    });
  }

  /** A node's Spot Guard taints and whether it is cordoned. */
  async nodeState(name: string): Promise<{ taints: string[]; cordoned: boolean }> {
    const node = await this.core.readNode({ name });
    return {
      taints: (node.spec?.taints ?? []).filter((t) => !t.key.startsWith('node.kubernetes.io/')).map((t) => `${t.key}=${t.value}:${t.effect}`),
      cordoned: node.spec?.unschedulable === true,
    };
  }

  /** An application pod (with a controller) on a node, Running. */
  async pod(nodeName: string, name: string): Promise<void> {
    await this.core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web', uid: '11111111-2222-3333-4444-555555555555', controller: true }] },
        spec: { nodeName, tolerations: [{ operator: 'Exists' }], terminationGracePeriodSeconds: 0, containers: [{ name: 'main', image: 'registry.invalid/web:1' }] },
      },
    });
  }

  /**
   * Starts the real worker, configured as a user would: environment variables only. In `memoryCgroup` (a directory)
   * it starts already in that cgroup, as in a pod with a memory limit, so Node sizes its heaps from the limit.
   * `entry`: another worker script started the same way (the benchmark's, bench/naive/worker.js).
   */
  async startWorker(extraEnv: Record<string, string> = {}, memoryCgroup?: string, entry = workerMain): Promise<void> {
    this.worker = this.spawnWorker(extraEnv, memoryCgroup, entry);
    await this.worker.ready();
  }

  /**
   * Another worker process beside the one startWorker runs (or several at once), on the same Temporal server, task
   * queues and groups, as a Deployment's replicas are: each is stopped by stop(), or by the test through its handle.
   */
  async startWorkers(count: number, extraEnv: Record<string, string> = {}): Promise<WorkerProcess[]> {
    const started = Array.from({ length: count }, () => this.spawnWorker(extraEnv, undefined, workerMain));
    this.otherWorkers.push(...started);
    await Promise.all(started.map((worker) => worker.ready()));
    return started;
  }

  private spawnWorker(extraEnv: Record<string, string>, memoryCgroup: string | undefined, entry: string): WorkerProcess {
    const [command, args] = memoryCgroup
      ? ['/bin/sh', ['-c', 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"', 'join-cgroup', memoryCgroup, process.execPath, ...WORKER_NODE_FLAGS, entry]]
      : [process.execPath, [...WORKER_NODE_FLAGS, entry]];
    const worker = spawn(command, args, {
      env: {
        ...WORKER_LAUNCH_ENV,
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        TEMPORAL_ADDRESS: this.temporal?.address ?? '',
        SPOT_ASG_NAME: SPOT,
        ON_DEMAND_ASG_NAME: ON_DEMAND,
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: 'test',
        AWS_SECRET_ACCESS_KEY: 'test',
        AWS_ENDPOINT_URL_AUTO_SCALING: this.aws.url,
        KUBECONFIG: this.k8s.kubeconfigPath,
        LOG_LEVEL: 'WARN',
        // The revert-to-spot monitor on a short leash, so a revert fits in a test: checks every 5 s, 20 s window.
        SPOT_GUARD_MONITOR_INTERVAL: '5',
        SPOT_GUARD_STABILITY_WINDOW: '20s',
        ...extraEnv,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    stopOnExit(worker);
    // SPOT_GUARD_WORKER_LOG: a file that also gets the worker's output, to study a run (GC traces, warnings) after it.
    const logFile = process.env.SPOT_GUARD_WORKER_LOG;
    if (logFile) {
      const file = createWriteStream(logFile, { flags: 'a' });
      worker.stdout?.pipe(file, { end: false });
      worker.stderr?.pipe(file, { end: false });
      worker.once('exit', () => file.end());
    }
    return new WorkerProcess(worker);
  }

  async stopWorker(): Promise<void> {
    await this.worker?.stop();
  }

  /** The worker's peak resident memory so far (VmHWM from /proc), in MiB. */
  workerPeakMemoryMiB(): number | undefined {
    const pid = this.worker?.child.pid;
    if (!pid) return undefined;
    try {
      const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      return match ? Number(match[1]) / 1024 : undefined;
    } catch {
      return undefined;
    }
  }

  workerLog(): string {
    return this.worker?.log() ?? '';
  }
}

/** One real worker process: its output, and the two ways it ends (SIGTERM and wait, or SIGKILL). */
export class WorkerProcess {
  private readonly output: string[] = [];
  /** Its exit code, or the signal that ended it, once it has exited (and been reaped). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(readonly child: ChildProcess) {
    const keep = (chunk: Buffer) => this.output.push(chunk.toString());
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /** The Temporal SDK's default worker identity, as it appears in the workflows' histories. */
  get identity(): string {
    return `${this.child.pid}@${hostname()}`;
  }

  async ready(): Promise<void> {
    const deadline = Date.now() + 60_000;
    while (!this.log().includes('worker polling task queue')) {
      if (this.child.exitCode !== null) throw new Error(`the worker exited with ${this.child.exitCode}:\n${this.log()}`);
      if (Date.now() > deadline) throw new Error(`the worker did not start:\n${this.log()}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /** SIGKILL: the worker dies mid-step, with no chance to finish or report anything. */
  kill(): void {
    this.child.kill('SIGKILL');
  }

  /** SIGTERM, as a rollout does, then waits for it to finish its tasks in hand and exit (SIGKILL after 40 s). */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 40_000);
    timer.unref();
    await this.exited;
    clearTimeout(timer);
  }

  log(): string {
    return this.output.join('');
  }
}
