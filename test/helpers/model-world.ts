// One sequence of the model-based test (test/model.workflow.test.ts): a time-skipping server of its own, fake groups
// and a fake Kubernetes API with a small scheduler, a worker that can be restarted, the steps that act on them, the
// settling at the end, and the invariants. The definitions the invariants rest on are in the test's header.
import { TerminateInstanceInAutoScalingGroupCommand } from '@aws-sdk/client-auto-scaling';
import type { V1Node, V1Pod } from '@kubernetes/client-node';
import { Client, Connection, WorkflowNotFoundError, type WorkflowHandle } from '@temporalio/client';
import { type InternalConnectionOptions, InternalConnectionOptionsSymbol } from '@temporalio/client/lib/connection.js';
import { msToTs, tsToMs } from '@temporalio/common/lib/time.js';
import proto from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { NativeConnection, Worker } from '@temporalio/worker';
import { Context } from '@temporalio/activity';
import { createActivities } from '../../activities/index.js';
import { reportInterruption, requestRebalance } from '../../signaler/workflow-requests.js';
import { type CapacityStatus, capacityStatusQuery } from '../../workflows/capacity/api.js';
import { type MonitorStatus, monitorStatusQuery } from '../../workflows/monitor/api.js';
import { drainNowSignal, type RebalanceStatus, rebalanceStatusQuery } from '../../workflows/rebalance/api.js';
import { capacityWorkflowId, monitorWorkflowId, rebalanceWorkflowId } from '../../workflows/shared/ids.js';
import { searchAttributes } from '../../workflows/shared/search-attributes.js';
import { awsError, INSUFFICIENT_CAPACITY, type LaunchBehaviour } from '../fakes/auto-scaling.js';
import { defaultFlowSettings, Harness } from './harness.js';
import { createTimeSkippingEnv, onSdkWarning } from './temporal.js';
import { connectThrough, StickyQueueSpy, StickyTimeout } from './worker-restarts.js';

export type Group = 'spot' | 'onDemand';

/** How a group launches from now on. `late`: InService only after many looks (past the 120 s waits). */
export type Launch =
  | { kind: 'ok'; looks: number }
  | { kind: 'late'; looks: number }
  | { kind: 'never' }
  | { kind: 'capacity-error' }
  | { kind: 'lost'; looks: number };

export type Step =
  /** A rebalance recommendation or a spot interruption notice for the `pick`-th InService spot instance. */
  | { do: 'notice'; kind: 'rebalance' | 'interruption'; pick: number }
  /** An operator's drainNow to the `pick`-th warned instance whose run is open (nothing when none is). */
  | { do: 'drainNow'; pick: number }
  | { do: 'launch'; group: Group; launch: Launch }
  /** Launches stuck Pending in the group (never, late) come InService after `looks` more looks. */
  | { do: 'finishLaunches'; group: Group; looks: number }
  /** An operator's TerminateInstanceInAutoScalingGroup with decrement of the `pick`-th InService instance of the group. */
  | { do: 'operatorTerminate'; group: Group; pick: number }
  /** AWS takes the `pick`-th InService spot instance; `relaunch`: the group launches its replacement at once. */
  | { do: 'reclaim'; pick: number; relaunch: boolean }
  /**
   * A PodDisruptionBudget refuses every eviction of the pods now on the `pick`-th InService spot instance's node
   * (`block`), or no longer refuses any (`lift`, every block lifted).
   */
  | { do: 'pdb'; action: 'block' | 'lift'; pick: number }
  /**
   * The next `times` calls of an Auto Scaling command fail with a 503; `afterApplying`: AWS made the change and the
   * answer was lost.
   */
  | { do: 'awsFault'; command: AwsCommand; times: number; afterApplying: boolean }
  | { do: 'restart' }
  | { do: 'sleep'; seconds: number };

export type AwsCommand = 'SetDesiredCapacity' | 'TerminateInstanceInAutoScalingGroup' | 'DescribeAutoScalingGroups';

export interface Scenario {
  /** The spot group's starting size, and the room below its MaxSize. */
  spot: number;
  spotRoom: number;
  onDemand: number;
  /** 0: the on-demand group is at its MaxSize (a fallback is refused; both failing leads to holding). */
  onDemandRoom: number;
  terminateDrained: boolean;
  /** Start the revert-to-spot monitor with the first fallback (the harness's startMonitor). */
  monitor: boolean;
  steps: Step[];
}

export function describeStep(step: Step): string {
  switch (step.do) {
    case 'notice':
      return `${step.kind} notice #${step.pick}`;
    case 'drainNow':
      return `drainNow #${step.pick}`;
    case 'launch':
      return `${step.group} launches: ${step.launch.kind}${'looks' in step.launch ? ` (${step.launch.looks} looks)` : ''}`;
    case 'finishLaunches':
      return `${step.group} pending launches finish after ${step.looks} looks`;
    case 'operatorTerminate':
      return `operator terminates ${step.group} #${step.pick} with decrement`;
    case 'reclaim':
      return `AWS reclaims spot #${step.pick}${step.relaunch ? ', the group relaunches at once' : ''}`;
    case 'pdb':
      return step.action === 'block' ? `a PodDisruptionBudget blocks the pods of spot #${step.pick}` : 'every PodDisruptionBudget block lifted';
    case 'awsFault':
      return `the next ${step.times} ${step.command} fail with a 503${step.afterApplying ? ' after AWS applied them' : ''}`;
    case 'restart':
      return 'worker restart';
    case 'sleep':
      return `sleep ${step.seconds} s`;
  }
}

const LIFETIME_REAL_MS = Number(process.env.SPOT_GUARD_MODEL_SEQUENCE_REAL_MS ?? 120_000);
/**
 * The activities that wait until an absolute deadline the workflow decided (a drain blocked by a PodDisruptionBudget,
 * a node turning Ready, moved pods starting) compare it with the worker's clock, while the workflow decided it on the
 * server's skipped clock, hours ahead: such an activity would run for hours of real time, holding the server's clock.
 * In the model they wait as long as the workflow asked, at most this much real time, and then report as they do at
 * their deadline.
 */
const REAL_WAIT_CAP_MS = 1500;
/** Calls still retrying after a sequence (see connectionOfTheWorld) have given up by then. */
const CONNECTION_LINGER_MS = 90_000;

/**
 * The Java test server rejects a CancelTimer command for a timer that fired while the workflow task cancelling it was
 * running ("invalid history builder state for action"; a real server drops the buffered TimerFired instead), and on
 * the task's timeout it loses that buffered event: the workflow is wedged for good and the server's clock stays
 * locked. It happens when a timer falls due, in real time, during a workflow task (the clock runs in real time while a
 * task is outstanding). A sequence that meets it is not a verdict on Spot Guard: the test skips it and says so.
 */
export class TestServerFault extends Error {}
const TEST_SERVER_FAULT = /invalid history builder state for action/;
const KICK_SIGNAL = 'spotGuardModelKick';
const STABLE_PHASES = new Set(['holding', 'awaiting-reclaim']);

const nodeNameOf = (instanceId: string): string => `node-${instanceId.slice(2)}`;
const instanceOfNode = (node: V1Node): string => node.spec?.providerID?.split('/').pop() ?? '';
const isDaemonOrMirror = (pod: V1Pod): boolean =>
  pod.metadata?.ownerReferences?.some((o) => o.kind === 'DaemonSet') === true || pod.metadata?.annotations?.['kubernetes.io/config.mirror'] !== undefined;
/** A pod a drain must evict before its node may go: running, not a DaemonSet's or a mirror pod, not already evicted. */
const mustBeEvicted = (pod: V1Pod): boolean => !isDaemonOrMirror(pod) && pod.metadata?.deletionTimestamp === undefined && pod.status?.phase !== 'Succeeded' && pod.status?.phase !== 'Failed';

export class ModelWorld {
  readonly log: string[] = [];
  /** What the workflows warned about (their log at WARN and ERROR; complete once the world has stopped). */
  readonly warnings: string[] = [];
  /** Invariant 5's breaches, seen while settling. */
  readonly budgetViolations: string[] = [];
  /** Invariant 2's breaches, seen as they happen (at the terminate call). */
  readonly terminationViolations: string[] = [];
  /** Counted for the test's statistics. */
  readonly seen = { restarts: 0, notices: 0, operatorTerminations: 0, reclaims: 0, stickyTasksMoved: 0, spotRetired: 0, onDemandRemoved: 0, held: 0 };
  private env!: TestWorkflowEnvironment;
  private spy!: StickyQueueSpy;
  private workerConnection!: NativeConnection;
  private stickyTimeout!: StickyTimeout;
  h!: Harness;
  private worker?: Worker;
  private running?: Promise<void>;
  private workerError?: unknown;
  private workerNumber = 0;
  /**
   * Every call of the world and of its activities goes through this connection, closed well after the sequence: a
   * long call (a sleep, a poll) cut by the test server's GOAWAY is retried on a timer, which throws (uncaught) if it
   * fires after its channel has closed. The environment's own connection carries no call of the world's.
   */
  private connectionOfTheWorld?: Connection;
  private client!: Client;
  private stopped = false;
  private testServerFault?: string;
  private faultSeen: () => void = () => undefined;
  private readonly fault = new Promise<void>((resolve) => (this.faultSeen = resolve));
  private stopListening: () => void = () => undefined;
  private readonly started = Date.now();
  /** Starting desired capacity, lowered by an operator's decrement of an instance nobody held on purpose. */
  readonly baseline: Record<Group, number> = { spot: 0, onDemand: 0 };
  /** Warned instances (by the model's notices), in order. */
  readonly warned: string[] = [];
  /** Replacements a group launched on its own that the spot group drains as a surplus (a book carried over), as seen. */
  private readonly surplus = new Set<string>();
  private readonly operatorTargets = new Set<string>();
  private podCounter = 0;
  /** A SetDesiredCapacity failed after AWS applied it (its retry may still be under way). */
  private lostDesiredAnswer = false;

  constructor(
    readonly scenario: Scenario,
  ) {}

  private groupName(group: Group): string {
    return group === 'spot' ? this.h.spot : this.h.onDemand;
  }

  private note(text: string): void {
    this.log.push(`[+${Math.round((Date.now() - this.started) / 100) / 10}s real] ${text}`);
  }

  async start(): Promise<this> {
    const { scenario } = this;
    this.env = await createTimeSkippingEnv();
    this.stopListening = onSdkWarning((message, meta) => {
      const text = `${message} ${JSON.stringify(meta)}`;
      const { instanceId, reason, asgName } = (meta ?? {}) as Record<string, unknown>;
      if (typeof asgName === 'string' || typeof instanceId === 'string') this.warnings.push(`${message}${typeof instanceId === 'string' ? ` (${instanceId})` : ''}${typeof reason === 'string' ? `: ${reason}` : ''}`);
      if (!TEST_SERVER_FAULT.test(text) || this.testServerFault) return;
      this.testServerFault = text;
      this.faultSeen();
    });
    // The test service (sleep, the server's time) as the environment's own connection has it.
    const options: InternalConnectionOptions = { address: this.env.address, [InternalConnectionOptionsSymbol]: { supportsTestService: true } };
    this.connectionOfTheWorld = await Connection.connect(options);
    this.client = new Client({ connection: this.connectionOfTheWorld, namespace: this.env.namespace ?? 'default' });
    this.spy = await new StickyQueueSpy(this.env.address).start();
    this.workerConnection = await connectThrough(this.spy);
    this.stickyTimeout = new StickyTimeout(this.connectionOfTheWorld, this.env.namespace ?? 'default');
    this.h = await new Harness(this.env).start();
    this.h.activityClient = this.client;
    this.h.settings = defaultFlowSettings(this.h.spot, this.h.onDemand, { SPOT_GUARD_TERMINATE_DRAINED: String(scenario.terminateDrained) });
    const real = createActivities({
      autoScaling: this.h.aws.client,
      kubernetes: this.h.k8s.coreApi(),
      kubernetesPolicy: this.h.k8s.policyApi(),
      temporal: this.h.activityClient,
      taskQueue: this.h.taskQueue,
      settings: this.h.settings,
      pairs: this.h.pairs,
      pollBatchWindowMs: 0,
      evictionRetrySeconds: 0.05,
    });
    this.h.activityOverrides = {
      evictPods: onWorkerClock(real.evictPods),
      awaitNodeReady: onWorkerClock(real.awaitNodeReady),
      awaitPodsRescheduled: onWorkerClock(real.awaitPodsRescheduled),
    };
    this.h.startMonitor = scenario.monitor;
    const spot = this.h.aws.addGroup(this.h.spot, { desired: scenario.spot, max: scenario.spot + scenario.spotRoom, launch: { kind: 'in-service-after-looks', looks: 2 } });
    const onDemand = this.h.aws.addGroup(this.h.onDemand, { desired: scenario.onDemand, max: scenario.onDemand + scenario.onDemandRoom, launch: { kind: 'in-service-after-looks', looks: 2 } });
    this.baseline.spot = scenario.spot;
    this.baseline.onDemand = scenario.onDemand;
    for (const instanceId of [...spot, ...onDemand]) this.addNode(instanceId);
    for (const instanceId of spot) {
      for (let i = 0; i < 2; i++) this.h.k8s.addPod({ name: `app-${++this.podCounter}`, nodeName: nodeNameOf(instanceId), ownerKind: 'ReplicaSet', ownerUid: `rs-${this.podCounter % 3}` });
    }
    this.h.aws.onInService = (instanceId) => this.addNode(instanceId);
    this.h.aws.onTerminate = (instanceId, asgName, how) => this.terminated(instanceId, asgName, how);
    this.h.k8s.placeEvicted = () => this.pickNode();
    this.note(`spot ${spot.join(' ')} (max ${scenario.spot + scenario.spotRoom}); on-demand ${onDemand.join(' ') || '-'} (max ${scenario.onDemand + scenario.onDemandRoom}); terminate drained ${scenario.terminateDrained}; monitor ${scenario.monitor}`);
    await this.startWorker();
    return this;
  }

  /** A node as kubelet registers it, with a DaemonSet pod. */
  private addNode(instanceId: string): void {
    const name = nodeNameOf(instanceId);
    this.h.k8s.addNode({ name, instanceId });
    this.h.k8s.addPod({ namespace: 'kube-system', name: `ds-${name}`, nodeName: name, ownerKind: 'DaemonSet' });
  }

  private async startWorker(): Promise<void> {
    const identity = `model-w${++this.workerNumber}`;
    this.h.workerOptions = { connection: this.workerConnection, identity, shutdownForceTime: '10s' };
    const worker = await this.h.worker();
    this.worker = worker;
    const running = worker.run().catch((error: unknown) => {
      if (this.running === running) this.workerError = error;
    });
    this.running = running;
  }

  private async stopWorker(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    this.worker = undefined;
    const running = this.running;
    // A failure of the worker that is being stopped (forced after 10 s) is not one of the sequence's.
    this.running = undefined;
    worker.shutdown();
    await running;
    if (this.workerError) this.note(`worker ${this.workerNumber} stopped with: ${errorText(this.workerError)}`);
    this.workerError = undefined;
    this.stickyTimeout.watch(this.spy.queuesOf(`model-w${this.workerNumber}`));
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    try {
      await this.stopWorker();
    } finally {
      this.seen.stickyTasksMoved = this.stickyTimeout.moved;
      await this.stickyTimeout.stop();
      await this.h.stop();
      await this.workerConnection.close();
      await this.spy.stop();
      await this.env.teardown();
      this.stopListening();
      const connection = this.connectionOfTheWorld;
      setTimeout(() => void connection?.close().catch(() => undefined), CONNECTION_LINGER_MS).unref();
    }
  }

  // --- the cluster: nodes leave with their instances, a small scheduler places pods ----------------------------------

  private live(group: Group): { instanceId: string; lifecycleState: string }[] {
    return this.h.aws.instances(this.groupName(group)).filter((i) => !/^Terminat/.test(i.lifecycleState));
  }

  private liveIds(group: Group): Set<string> {
    return new Set(this.live(group).map((i) => i.instanceId));
  }

  private inService(group: Group): string[] {
    return this.live(group).filter((i) => i.lifecycleState === 'InService').map((i) => i.instanceId);
  }

  private podsOn(nodeName: string): V1Pod[] {
    return [...this.h.k8s.pods.values()].filter((p) => p.spec?.nodeName === nodeName);
  }

  /** Where a scheduler would put a pod: the least loaded Ready, schedulable, untainted node of a live instance. */
  private pickNode(): string | undefined {
    const live = new Set([...this.liveIds('spot'), ...this.liveIds('onDemand')]);
    const candidates = [...this.h.k8s.nodes.values()].filter(
      (n) =>
        live.has(instanceOfNode(n)) &&
        n.spec?.unschedulable !== true &&
        !(n.spec?.taints ?? []).some((t) => t.effect === 'NoSchedule' || t.effect === 'NoExecute') &&
        n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
    );
    const load = (n: V1Node): number => this.podsOn(n.metadata?.name ?? '').length;
    candidates.sort((a, b) => load(a) - load(b) || (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''));
    return candidates[0]?.metadata?.name;
  }

  /** Pods left Pending (nowhere to go at the time) are placed now, as the scheduler would once a node fits. */
  private schedulePending(): void {
    for (const pod of this.h.k8s.pods.values()) {
      if (pod.spec?.nodeName !== undefined || pod.status?.phase !== 'Pending') continue;
      const node = this.pickNode();
      if (!node) return;
      pod.spec = { ...pod.spec, containers: pod.spec?.containers ?? [], nodeName: node };
      pod.status = { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] };
    }
  }

  /** An instance left: its node goes (as the cloud controller deletes it), its controllers' pods wait to be placed again. */
  private dropNode(instanceId: string): void {
    const name = nodeNameOf(instanceId);
    if (!this.h.k8s.nodes.delete(name)) return;
    for (const [key, pod] of [...this.h.k8s.pods.entries()]) {
      if (pod.spec?.nodeName !== name) continue;
      const controlled = pod.metadata?.ownerReferences?.some((o) => o.controller && o.kind !== 'DaemonSet');
      if (!controlled || pod.metadata?.deletionTimestamp) {
        this.h.k8s.pods.delete(key);
        continue;
      }
      pod.spec = { ...pod.spec, containers: pod.spec?.containers ?? [], nodeName: undefined };
      pod.status = { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False' }] };
    }
  }

  /** Invariant 2, checked at the moment of the termination: drained by Spot Guard, or removed by the operator. */
  private terminated(instanceId: string, asgName: string, how: 'terminate-call' | 'scale-in'): void {
    const byOperator = how === 'terminate-call' && this.operatorTargets.has(instanceId);
    const node = this.h.k8s.nodes.get(nodeNameOf(instanceId));
    const running = this.podsOn(nodeNameOf(instanceId)).filter(mustBeEvicted).map((p) => p.metadata?.name);
    const state = node ? `node ${node.metadata?.name}: cordoned ${node.spec?.unschedulable === true}, taints [${(node.spec?.taints ?? []).map((t) => t.key).join(', ')}], pods to evict [${running.join(', ')}]` : 'no node';
    this.note(`${asgName}: ${instanceId} terminated (${how}${byOperator ? ', by the operator' : ''}; ${state})`);
    if (!byOperator && how === 'terminate-call') this.seen[asgName === this.h.spot ? 'spotRetired' : 'onDemandRemoved']++;
    if (!byOperator) {
      if (how === 'scale-in') this.terminationViolations.push(`${asgName} picked ${instanceId} to terminate itself (desired set below its instance count): nobody drained it (${state})`);
      else if (running.length > 0) this.terminationViolations.push(`${instanceId} of ${asgName} was terminated with pods still running (${state})`);
    }
    this.dropNode(instanceId);
  }

  private connection(): Connection {
    if (!this.connectionOfTheWorld) throw new Error('the world has not started');
    return this.connectionOfTheWorld;
  }

  private testService(): NonNullable<Connection['testService']> {
    const { testService } = this.connection();
    if (!testService) throw new Error('no test service on the connection');
    return testService;
  }

  private async serverTimeMs(): Promise<number> {
    return tsToMs((await this.testService().getCurrentTime({})).time);
  }

  // --- the steps ------------------------------------------------------------------------------------------------

  private remaining(): number {
    return this.started + LIFETIME_REAL_MS - Date.now();
  }

  /** env.sleep, bounded in real time: a locked clock fails the sequence instead of hanging the suite. */
  private async sleep(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const budget = this.remaining();
    if (this.testServerFault) throw new TestServerFault(this.testServerFault);
    if (budget <= 0) throw new Error(`the sequence took more than ${LIFETIME_REAL_MS} ms of real time (the time-skipping clock locked, or workflows stuck)\n${await this.diagnose()}`);
    const abort = new AbortController();
    // Aborted when the budget runs out: a call left running would be retried on a connection closed by then.
    const sleeping = this.connection().withAbortSignal(abort.signal, () => this.testService().unlockTimeSkippingWithSleep({ duration: msToTs(ms) }));
    sleeping.catch(() => undefined);
    const faulted = this.fault.then(() => {
      throw new TestServerFault(this.testServerFault);
    });
    faulted.catch(() => undefined); // a fault after this sleep is the next one's
    try {
      await Promise.race([
        sleeping,
        faulted,
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`a ${ms / 1000} s sleep took more than the ${budget} ms of real time left to the sequence (the time-skipping clock locked, or workflows stuck)`)), budget);
        }),
      ]);
    } catch (error) {
      if (error instanceof TestServerFault) throw error;
      throw new Error(`${(error as Error).message}\n${await this.diagnose()}`, { cause: error });
    } finally {
      clearTimeout(timer);
      abort.abort();
    }
    if (this.workerError) throw new Error(`the worker failed: ${errorText(this.workerError)}`);
  }

  async play(step: Step): Promise<void> {
    this.note(describeStep(step));
    await this.act(step);
    this.schedulePending();
    // Lets the workflows take the step in (a notice verified, a request's coalescing window begun) before the next one.
    if (step.do !== 'sleep') await this.sleep(1000);
  }

  private async act(step: Step): Promise<void> {
    const { h } = this;
    switch (step.do) {
      case 'notice': {
        const candidates = this.inService('spot').filter((id) => h.k8s.nodes.has(nodeNameOf(id)));
        if (candidates.length === 0) return this.note('  (no InService spot instance)');
        const instanceId = candidates[step.pick % candidates.length];
        const input = { instanceId, nodeName: nodeNameOf(instanceId), noticeTime: new Date(await this.serverTimeMs()).toISOString() };
        if (!this.warned.includes(instanceId)) this.warned.push(instanceId);
        this.seen.notices++;
        this.note(`  → ${instanceId}`);
        if (step.kind === 'rebalance') await requestRebalance(this.client, h.taskQueue, input);
        else await reportInterruption(this.client, h.taskQueue, input, { action: 'terminate', time: new Date((await this.serverTimeMs()) + 120_000).toISOString() });
        return;
      }
      case 'drainNow': {
        const open: string[] = [];
        for (const instanceId of this.warned) if ((await this.runState(instanceId)) === 'RUNNING') open.push(instanceId);
        if (open.length === 0) return this.note('  (no open run)');
        const instanceId = open[step.pick % open.length];
        this.note(`  → ${instanceId}`);
        await this.client.workflow.getHandle(rebalanceWorkflowId(instanceId)).signal(drainNowSignal, { reason: 'model: operator drainNow' });
        return;
      }
      case 'launch':
        h.aws.setLaunch(this.groupName(step.group), launchBehaviour(step.launch));
        return;
      case 'finishLaunches':
        h.aws.finishLaunches(this.groupName(step.group), step.looks);
        return;
      case 'operatorTerminate': {
        await this.outsideLostAnswerRetries();
        const candidates = this.inService(step.group);
        if (candidates.length === 0) return this.note('  (no InService instance)');
        const instanceId = candidates[step.pick % candidates.length];
        const held = (await this.heldOnPurpose(step.group)).has(instanceId);
        if (!held) this.baseline[step.group]--;
        this.seen.operatorTerminations++;
        this.note(`  → ${instanceId} (${held ? 'held on purpose: its decrement is the one Spot Guard owes' : 'not held on purpose: the starting value comes down by one'})`);
        this.operatorTargets.add(instanceId);
        // The operator runs the command again when AWS answers with an error (a fault injected for Spot Guard's calls hits
        // it too); an instance not found means an earlier try went through.
        for (let attempt = 1; ; attempt++) {
          try {
            await h.aws.client.send(new TerminateInstanceInAutoScalingGroupCommand({ InstanceId: instanceId, ShouldDecrementDesiredCapacity: true }));
            return;
          } catch (error) {
            if (/not found/i.test(errorText(error))) return;
            if (attempt >= 5) throw error;
          }
        }
      }
      case 'reclaim': {
        const candidates = this.inService('spot');
        if (candidates.length === 0) return this.note('  (no InService spot instance)');
        const instanceId = candidates[step.pick % candidates.length];
        this.seen.reclaims++;
        this.note(`  → ${instanceId}`);
        h.aws.reclaim(instanceId, { relaunch: step.relaunch });
        this.dropNode(instanceId);
        return;
      }
      case 'pdb': {
        if (step.action === 'lift') return h.k8s.pdbBlocks.clear();
        const candidates = this.inService('spot').filter((id) => h.k8s.nodes.has(nodeNameOf(id)));
        if (candidates.length === 0) return this.note('  (no InService spot instance)');
        const instanceId = candidates[step.pick % candidates.length];
        const pods = [...h.k8s.pods.entries()].filter(([, p]) => p.spec?.nodeName === nodeNameOf(instanceId) && mustBeEvicted(p)).map(([key]) => key);
        for (const key of pods) h.k8s.pdbBlocks.set(key, Number.MAX_SAFE_INTEGER);
        this.note(`  → ${instanceId}: ${pods.join(', ') || 'no pods'}`);
        return;
      }
      case 'awsFault': {
        const lostAnswer = step.command === 'SetDesiredCapacity' && step.afterApplying;
        const error = () => {
          if (lostAnswer) this.lostDesiredAnswer = true;
          return awsError('ServiceUnavailable', 'Service Unavailable', 503);
        };
        h.aws.fail(step.command, step.times, error, step.afterApplying);
        return;
      }
      case 'restart':
        this.seen.restarts++;
        // A SetDesiredCapacity in flight may have been applied with its answer lost with the worker, like awsFault's.
        this.lostDesiredAnswer = true;
        await this.stopWorker();
        await this.startWorker();
        return;
      case 'sleep':
        return this.sleep(step.seconds * 1000);
    }
  }

  /** What each workflow is doing: for a sleep that does not end (which workflow holds the test server's clock). */
  private async diagnose(): Promise<string> {
    const ids = [...this.warned.map(rebalanceWorkflowId), capacityWorkflowId(this.h.spot), capacityWorkflowId(this.h.onDemand), monitorWorkflowId(this.h.spot, this.h.onDemand)];
    const lines = [`--- workflows (worker ${this.workerNumber}, sticky tasks moved ${this.stickyTimeout.moved}, queries refused ${this.stickyTimeout.refusedQueries})`];
    for (const id of ids) {
      try {
        const handle = this.client.workflow.getHandle(id);
        const d = await handle.describe();
        const activities = (d.raw.pendingActivities ?? []).map((a) => `${a.activityType?.name}:${a.state}:attempt ${a.attempt}:${a.lastFailure?.message ?? ''}`);
        const events = ((await handle.fetchHistory()).events ?? []).slice(-6).map((e) => proto.temporal.api.enums.v1.EventType[e.eventType ?? 0].replace('EVENT_TYPE_', ''));
        lines.push(`${id}: ${d.status.name}, history ${d.historyLength}, pending activities [${activities.join(', ')}], last events [${events.join(' ')}]`);
      } catch (error) {
        lines.push(`${id}: ${(error as Error).message}`);
      }
    }
    return [...lines, ...this.log.slice(-15)].join('\n');
  }

  // --- reading the workflows ---------------------------------------------------------------------------------------

  private async runState(instanceId: string): Promise<string | undefined> {
    try {
      return (await this.client.workflow.getHandle(rebalanceWorkflowId(instanceId)).describe()).status.name;
    } catch (error) {
      if (error instanceof WorkflowNotFoundError) return undefined;
      throw error;
    }
  }

  private async runPhase(instanceId: string): Promise<string | undefined> {
    const description = await this.client.workflow.getHandle(rebalanceWorkflowId(instanceId)).describe();
    return description.typedSearchAttributes.get(searchAttributes.phase);
  }

  /**
   * A query, sent again after a kick (a signal no handler waits for, which only makes a workflow task) when it reached
   * the sticky queue of a stopped worker: the kick's task moves the workflow to the running worker.
   */
  private async query<T>(handle: WorkflowHandle, run: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await run();
      } catch (error) {
        if (attempt >= 5 || !/sticky worker gone/.test(String(error))) throw error;
        await handle.signal(KICK_SIGNAL);
        await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
      }
    }
  }

  /**
   * The one case a retried SetDesiredCapacity cannot tell apart (docs/architecture.md, "Throttling"): an attempt AWS
   * applied but whose answer was lost (an AWS fault after applying, or the worker stopped), then an operator's decrement
   * before the retry. Spot Guard then errs towards one
   * instance too many, which invariant 1 would report; the operator waits out such retries.
   */
  private async outsideLostAnswerRetries(): Promise<void> {
    if (!this.lostDesiredAnswer) return;
    for (let second = 0; second < 120; second++) {
      const retrying = await Promise.all((['spot', 'onDemand'] as const).map((group) => this.setDesiredCapacityRetrying(group)));
      if (!retrying.includes(true)) break;
      await this.sleep(1000);
    }
    this.lostDesiredAnswer = false;
  }

  private async setDesiredCapacityRetrying(group: Group): Promise<boolean> {
    try {
      const { raw } = await this.client.workflow.getHandle(capacityWorkflowId(this.groupName(group))).describe();
      return (raw.pendingActivities ?? []).some((a) => a.activityType?.name === 'setDesiredCapacity');
    } catch (error) {
      if (error instanceof WorkflowNotFoundError) return false;
      throw error;
    }
  }

  private async capacityStatus(group: Group): Promise<CapacityStatus | undefined> {
    const handle = this.client.workflow.getHandle(capacityWorkflowId(this.groupName(group)));
    try {
      return await this.query(handle, () => handle.query(capacityStatusQuery));
    } catch (error) {
      if (error instanceof WorkflowNotFoundError) return undefined;
      throw error;
    }
  }

  private async monitorStatus(): Promise<MonitorStatus | undefined> {
    if (!this.scenario.monitor) return undefined;
    const handle = this.client.workflow.getHandle(monitorWorkflowId(this.h.spot, this.h.onDemand));
    try {
      return await this.query(handle, () => handle.query(monitorStatusQuery));
    } catch (error) {
      if (error instanceof WorkflowNotFoundError) return undefined;
      throw error;
    }
  }

  private async rebalanceStatus(instanceId: string): Promise<RebalanceStatus | undefined> {
    const handle = this.client.workflow.getHandle(rebalanceWorkflowId(instanceId));
    try {
      return await this.query(handle, () => handle.query(rebalanceStatusQuery));
    } catch {
      return undefined;
    }
  }

  /**
   * The instances of a group Spot Guard holds on purpose, by the test's definition: in the spot group, the warned
   * instances with an open book in its capacity workflow; in the on-demand group, the fallbacks the monitor tracks
   * (without the monitor: the fallbacks reported to it). Live members only; `books` lists the spot books as they are.
   */
  /** Whether a launch of this group is stuck in Pending (a launch that never ends). */
  private launchStuck(group: Group): boolean {
    return this.h.aws.instances(this.groupName(group)).some((i) => i.lifecycleState.startsWith('Pending'));
  }

  async heldOnPurpose(group: Group): Promise<Set<string>> {
    const live = this.liveIds(group);
    if (group === 'spot') return new Set(((await this.capacityStatus('spot'))?.books ?? []).map((b) => b.instanceId).filter((id) => live.has(id)));
    const monitor = await this.monitorStatus();
    const tracked = monitor ? monitor.events.filter((e) => e.state === 'tracked').map((e) => e.onDemandInstanceId) : this.h.fallbackReports.map((r) => r.onDemandInstanceId);
    return new Set(tracked.filter((id) => live.has(id)));
  }

  // --- settling, and the invariants ----------------------------------------------------------------------------------

  /** The instances whose rebalance runs count: the warned ones, and the surplus ones the spot group drains (seen so far). */
  private async withRuns(): Promise<string[]> {
    for (const book of (await this.capacityStatus('spot'))?.books ?? []) if (book.carriedFor) this.surplus.add(book.instanceId);
    return [...this.warned, ...[...this.surplus].filter((id) => !this.warned.includes(id))];
  }

  /** Why the workflows are not yet at rest (empty: every run ended or waits in holding or awaiting-reclaim). */
  private async unsettled(): Promise<string[]> {
    const reasons: string[] = [];
    let held = 0;
    for (const instanceId of await this.withRuns()) {
      if ((await this.runState(instanceId)) !== 'RUNNING') continue;
      const phase = await this.runPhase(instanceId);
      if (!phase || !STABLE_PHASES.has(phase)) reasons.push(`run of ${instanceId} in phase ${phase}`);
      if (phase === 'holding') held++;
    }
    // A late instance can turn InService at a look other than the late watch's own (the books' look): the watch sees it
    // at its next poll, a minute later. Not at rest before; a hold that never ends leaves the world unsettled, a failure.
    for (const hold of await this.holdsOutlivingCapacity()) reasons.push(`${hold} (the late watch has not seen it yet)`);
    for (const group of ['spot', 'onDemand'] as const) {
      const status = await this.capacityStatus(group);
      if (!status) continue;
      if (status.waiting.count > 0) reasons.push(`${group} capacity workflow: ${status.waiting.count} waiting for an instance`);
      // An on-demand +1 whose wait ended without an instance is watched for an hour, then given back: not at rest before,
      // unless a launch is stuck (a launch that never ends keeps its watch, and its +1, on purpose).
      if (group === 'onDemand' && status.waiting.late > 0 && !this.launchStuck('onDemand')) reasons.push(`onDemand capacity workflow: ${status.waiting.late} watched for a late instance`);
      if (status.pendingRequests.length > 0) reasons.push(`${group} capacity workflow: pending ${status.pendingRequests.join(', ')}`);
      if (status.draining.length > 0 || status.drainQueue.length > 0) reasons.push(`${group} capacity workflow: ${status.draining.length} draining, ${status.drainQueue.length} queued`);
      await this.checkDrainSlots(status);
    }
    const monitor = await this.monitorStatus();
    if (monitor?.inFlight) reasons.push(`monitor scaling down ${monitor.inFlight.instanceId} (${monitor.inFlight.step})`);
    this.seen.held = held;
    return reasons;
  }

  /**
   * Invariant 5: a slot of the disruption budget is held only by a run that is draining. A holder older than two
   * minutes of skipped time whose run has ended or is past its drain is a slot that was never given back.
   */
  private async checkDrainSlots(status: CapacityStatus): Promise<void> {
    const now = await this.serverTimeMs();
    for (const holder of status.draining) {
      if (now - Date.parse(holder.since) < 2 * 60_000 || this.budgetViolations.some((v) => v.includes(holder.requestId))) continue;
      const state = await this.runState(holder.instanceId);
      const phase = state === 'RUNNING' ? await this.runPhase(holder.instanceId) : undefined;
      if (phase === 'draining') continue;
      this.budgetViolations.push(`the drain slot ${holder.requestId} (since ${holder.since}) is held though its run is ${state === 'RUNNING' ? `in phase ${phase}` : (state ?? 'gone')}`);
    }
  }

  /**
   * Skipped time until every run has ended or waits in a stable phase, then two more minutes for the books' look, at
   * rest still (a late instance that turned InService meanwhile is seen by its watch's next poll: another round).
   */
  async settle(): Promise<void> {
    this.note('settling');
    let reasons: string[] = [];
    let minutes = 0;
    for (let look = 0; look < 30; look++) {
      await this.sleep(3 * 60_000);
      minutes += 3;
      this.schedulePending();
      reasons = await this.unsettled();
      if (reasons.length > 0) continue;
      await this.sleep(2 * 60_000);
      minutes += 2;
      reasons = await this.unsettled();
      if (reasons.length === 0) {
        this.note(`settled after ${minutes} min`);
        return;
      }
    }
    throw new Error(`not settled after 90 minutes: ${reasons.join('; ')}\n${await this.describe()}`);
  }

  /** The invariants: every breach, and the sequence's record when there is one. */
  async check(): Promise<{ problems: string[]; record: string }> {
    const problems: string[] = [];
    // 1. Desired capacity: the starting value plus what Spot Guard holds on purpose.
    const books = (await this.capacityStatus('spot'))?.books ?? [];
    const liveSpot = this.liveIds('spot');
    for (const book of books) if (!liveSpot.has(book.instanceId)) problems.push(`invariant 1: the spot group's book for ${book.instanceId} is open, but that instance left the group`);
    for (const group of ['spot', 'onDemand'] as const) {
      const held = await this.heldOnPurpose(group);
      // On-demand +1s still watched for a late instance (a launch that never ends keeps its watch).
      const watched = group === 'onDemand' ? ((await this.capacityStatus(group))?.waiting.late ?? 0) : 0;
      const expected = this.baseline[group] + held.size + watched;
      const desired = this.h.aws.desired(this.groupName(group));
      if (desired !== expected) {
        problems.push(`invariant 1: ${group} desired ${desired}, expected ${expected} = starting value ${this.baseline[group]} + held on purpose [${[...held].join(', ')}] + ${watched} watched for a late instance`);
      }
    }
    // 2. Terminations (checked as they happened).
    for (const violation of this.terminationViolations) problems.push(`invariant 2: ${violation}`);
    // 3. Nodes tainted or cordoned by Spot Guard have a live owner.
    const monitor = await this.monitorStatus();
    const liveAll = new Set([...liveSpot, ...this.liveIds('onDemand')]);
    const marks = new Set([this.h.settings.taint.key, this.h.settings.monitor.scaleDownTaint.key]);
    for (const node of this.h.k8s.nodes.values()) {
      const instanceId = instanceOfNode(node);
      if (!liveAll.has(instanceId)) continue;
      const taints = (node.spec?.taints ?? []).filter((t) => marks.has(t.key)).map((t) => t.key);
      if (taints.length === 0 && node.spec?.unschedulable !== true) continue;
      if ((await this.runState(instanceId)) === 'RUNNING') continue;
      if (monitor?.inFlight?.instanceId === instanceId) continue;
      problems.push(`invariant 3: node ${node.metadata?.name} (${instanceId}) is ${[taints.length > 0 ? `tainted ${taints.join(', ')}` : '', node.spec?.unschedulable ? 'cordoned' : ''].filter(Boolean).join(' and ')} with no live run that owns it`);
    }
    // 4. A hold lasts only while the replacement capacity is missing.
    await this.checkHoldEnds(problems);
    // 5. The disruption budget (seen while settling; slots whose lease ran out are in the warnings, see leakedDrainSlots).
    for (const violation of this.budgetViolations) problems.push(`invariant 5: ${violation}`);
    return { problems, record: problems.length > 0 ? await this.describe() : '' };
  }

  /** Invariant 5, from the capacity workflows' own warnings (complete once the world has stopped). */
  leakedDrainSlots(): string[] {
    return this.warnings.filter((w) => /drain slot lease expired without a release/.test(w)).map((w) => `invariant 5: ${w}`);
  }

  private async checkHoldEnds(problems: string[]): Promise<void> {
    for (const hold of await this.holdsOutlivingCapacity()) problems.push(`invariant 4: ${hold}`);
  }

  /** Runs held (tainted, pods kept) although the spot capacity raised for them is there. */
  private async holdsOutlivingCapacity(): Promise<string[]> {
    const spotInService = this.inService('spot').length;
    const spotDesired = this.h.aws.desired(this.h.spot);
    const holds: string[] = [];
    for (const instanceId of this.warned) {
      if ((await this.runState(instanceId)) !== 'RUNNING' || (await this.runPhase(instanceId)) !== 'holding') continue;
      const status = await this.rebalanceStatus(instanceId);
      if (status?.spot.desiredTarget !== undefined && spotInService >= spotDesired) {
        holds.push(`${instanceId} is held (tainted, its pods kept) although the spot capacity raised for it is there: ${spotInService} InService, desired ${spotDesired}`);
      }
    }
    return holds;
  }

  /** The sequence's record: what happened, the groups, the runs and the books, for the failure message. */
  async describe(): Promise<string> {
    const lines = ['--- what happened', ...this.log, '--- at the end'];
    for (const group of ['spot', 'onDemand'] as const) {
      const name = this.groupName(group);
      lines.push(`${group}: desired ${this.h.aws.desired(name)}, baseline ${this.baseline[group]}, instances ${this.h.aws.instances(name).map((i) => `${i.instanceId}:${i.lifecycleState}`).join(' ') || '-'}`);
    }
    lines.push(`spot books: ${((await this.capacityStatus('spot').catch(() => undefined))?.books ?? []).map((b) => b.instanceId).join(' ') || '-'}`);
    lines.push(`fallback reports: ${this.h.fallbackReports.map((r) => `${r.onDemandInstanceId} for ${r.warnedInstanceId}`).join(', ') || '-'}`);
    const monitor = await this.monitorStatus().catch(() => undefined);
    if (monitor) lines.push(`monitor: ${monitor.phase}, events ${monitor.events.map((e) => `${e.onDemandInstanceId}:${e.state}`).join(' ') || '-'}`);
    for (const instanceId of await this.withRuns().catch(() => this.warned)) {
      const status = await this.rebalanceStatus(instanceId);
      const state = await this.runState(instanceId).catch(() => '?');
      lines.push(
        `run of ${instanceId}: ${state}, phase ${status?.phase}, replacement ${status?.replacement ?? '-'} ${status?.replacementInstanceId ?? ''}, spot ${status?.spot.desiredTarget !== undefined ? `raised to ${status.spot.desiredTarget}` : (status?.spot.failure ?? '-')}, fate ${status?.instanceFate ?? '-'}; notes: ${(status?.notes ?? []).map((n) => n.replace(/^\S+ /, '')).join(' | ')}`,
      );
    }
    return lines.join('\n');
  }
}

/** The activity with its deadline moved from the server's clock to the worker's, and capped (see REAL_WAIT_CAP_MS). */
function onWorkerClock<I extends { deadline: string }, R>(activity: (input: I) => Promise<R>): (input: I) => Promise<R> {
  return (input) => {
    const serverNow = Context.current().info.currentAttemptScheduledTimestampMs || Date.now();
    const wait = Math.min(REAL_WAIT_CAP_MS, Math.max(0, Date.parse(input.deadline) - serverNow));
    return activity({ ...input, deadline: new Date(Date.now() + wait).toISOString() });
  };
}

const errorText = (error: unknown): string => (error instanceof Error ? error.message : JSON.stringify(error));

function launchBehaviour(launch: Launch): LaunchBehaviour {
  switch (launch.kind) {
    case 'ok':
    case 'late':
      return { kind: 'in-service-after-looks', looks: launch.looks };
    case 'never':
      return { kind: 'never' };
    case 'capacity-error':
      return { kind: 'capacity-error', message: INSUFFICIENT_CAPACITY };
    case 'lost':
      return { kind: 'lost-while-launching', looks: launch.looks, message: INSUFFICIENT_CAPACITY };
  }
}
