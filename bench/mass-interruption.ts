// Mass-interruption benchmark on the real peers: the Temporal dev server, moto behind our launcher (which counts the
// Auto Scaling requests it receives), kube-apiserver with kwok nodes and pods, and the real worker process. N spot
// nodes get rebalance recommendations within a short spread; the same scenario runs twice in one process, once with
// Spot Guard's design on its production worker and once with the original flow's naive strategy (bench/naive/: its own
// workflow, on a worker of the benchmark's), and the two are reported side by side and as ratios.
//
//   npm run bench -- --nodes 500 [--groups 10] [--in-service-delay 60] [--spread 30] [--only spot-guard|naive]
//                    [--node-lease S] [--worker-env NAME=VALUE ...]   (a worker setting to try, e.g. SPOT_GUARD_MAX_CACHED_WORKFLOWS=600)
//                    [--worker-memory-limit MiB]   (the worker in a memory cgroup with this limit, as in a pod; 0: none)
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateAutoScalingGroupCommand, CreateLaunchConfigurationCommand } from '@aws-sdk/client-auto-scaling';
import { ENABLED_TAG, FALLBACK_TAG, ON_DEMAND_ROLE, ROLE_TAG } from '../activities/pair-rules.js';
import { kubernetesStatus } from '../activities/errors.js';
import { instanceIdFromProviderId } from '../activities/kubernetes.js';
import { requestRebalance } from '../signaler/workflow-requests.js';
import { type RebalanceStatus, rebalanceStatusQuery } from '../workflows/rebalance/api.js';
import { rebalanceWorkflowId } from '../workflows/shared/ids.js';
import { EndToEnd, ON_DEMAND, SPOT, TASK_QUEUE } from '../scripts/peers/end-to-end.js';
import { createMemoryCgroup } from '../scripts/peers/memory-cgroup.js';
import { type CpuSeconds, cpuSnapshot, cpuSpent } from './cpu.js';
import { startNaiveRebalance } from './naive/start.js';
import { countsSince, type KeysOf, round, type Spread, spread } from './stats.js';
import { type StageLags, stagesOf, summarize } from './taint-lag.js';

// SPOT_GUARD_BENCH_RESULTS: another directory for the report (the suite's smoke run writes to a temporary one).
const resultsDir = process.env.SPOT_GUARD_BENCH_RESULTS || fileURLToPath(new URL('../../bench/results', import.meta.url));

type Strategy = 'spot-guard' | 'naive';

/** What differs between the two strategies: the worker started, the workflow type, how a warned node starts it. */
const strategies: Record<Strategy, { workerEntry?: string; workflowType: string; warn: (...args: Parameters<typeof requestRebalance>) => Promise<unknown> }> = {
  // Spot Guard's production worker (dist/worker/main.js) and its rebalance workflow, started as the signaler does.
  'spot-guard': { workflowType: 'rebalanceWorkflow', warn: requestRebalance },
  naive: {
    workerEntry: fileURLToPath(new URL('./naive/worker.js', import.meta.url)),
    workflowType: 'naiveRebalanceWorkflow',
    warn: async (client, taskQueue, input) => {
      await startNaiveRebalance(client, taskQueue, input);
    },
  },
};

interface Options {
  nodes: number;
  /** Spot/on-demand pairs the nodes are spread over (found by tags when more than one). */
  groups: number;
  inServiceDelaySeconds: number;
  spreadSeconds: number;
  only?: Strategy;
  /** kwok's node lease duration: 40 s renews 1,000 leases every 10 s, as kubelets do. */
  nodeLeaseSeconds: number;
  /** Extra environment for the worker under test, so a configuration can be measured against the defaults. */
  workerEnv: Record<string, string>;
  /** The worker's memory limit (a cgroup, as a pod's limit), in MiB; 0: none. */
  workerMemoryLimitMiB: number;
}

export interface StrategyResult {
  strategy: Strategy;
  nodes: number;
  groups: number;
  expectedDesired: number;
  finalDesired: number;
  lostIncrements: number;
  autoScalingCalls: {
    total: number;
    byAction: Record<string, number>;
    perWarnedNode: number;
    peakPerSecond: number;
    perSecondWhileWaiting: number;
    /** The same per spot/on-demand pair: what grows with the number of groups. */
    perSecondWhileWaitingPerGroup: number;
    /** From the last notice until the first replacement can be InService: only the waiting itself costs calls. */
    perSecondBeforeReplacements: number | null;
  };
  secondsFromFirstNoticeToAllIncrements: number | null;
  secondsFromLastNoticeToAllIncrements: number | null;
  secondsFromFirstNoticeToAllTainted: number | null;
  taintLagAfterReplacementInService: { p50: number | null; max: number | null; measured: number };
  /** That lag by stage, from the rebalance workflows' histories. */
  taintLagStages: StageLags;
  /** The part of that lag that is the replacement's node becoming Ready (the kubelet stand-in and kwok, not Spot Guard). */
  nodeReadyLagAfterInService: { p50: number | null; max: number | null; measured: number };
  replacements: { spot: number; onDemand: number; unavailable: number; distinctInstances: number };
  workerPeakMemoryMiB: number | undefined;
  /** With --worker-memory-limit: the limit, the cgroup's peak (what the kernel checks the limit against) and OOM kills. */
  workerMemoryLimit?: { limitMiB: number; cgroupPeakMiB: number | undefined; oomKills: number | undefined };
  /** CPU seconds each peer spent from the first notice until the run settled: where the wall time went. */
  cpuSecondsByPeer: CpuSeconds;
  /**
   * The Temporal dev server's writes to its store over the same span: workflow updates (each signal, workflow task
   * started or completed, activity started, heartbeat or completed is one; the store takes them one at a time), per
   * warned node, and all writes by operation. What a wave costs the Temporal server.
   */
  temporalWrites: { workflowUpdates: number; workflowUpdatesPerWarnedNode: number; byOperation: Record<string, number> };
  /** Requests kube-apiserver served over the same span, by verb and resource, the most first. */
  kubernetesRequests: Record<string, number>;
  /** Workflows with their replacement decided and their node tainted by the end (the run stops at a deadline). */
  settled: number;
  wallSeconds: number;
}

function parseArgs(argv: string[]): Options {
  const options: Options = { nodes: 100, groups: 1, inServiceDelaySeconds: 60, spreadSeconds: 30, nodeLeaseSeconds: 40, workerEnv: {}, workerMemoryLimitMiB: 0 };
  for (let i = 0; i < argv.length; i++) {
    const [flag, value] = [argv[i], argv[i + 1]];
    const number = (name: string, min: number, max: number): number => {
      const parsed = Number(value);
      if (value === undefined || !Number.isFinite(parsed) || parsed < min || parsed > max) {
        throw new Error(`${name} "${value}" is not a number from ${min} to ${max}`);
      }
      i++;
      return parsed;
    };
    if (flag === '--nodes') options.nodes = Math.round(number('--nodes', 1, 2000));
    else if (flag === '--groups') options.groups = Math.round(number('--groups', 1, 50));
    else if (flag === '--in-service-delay') options.inServiceDelaySeconds = number('--in-service-delay', 0, 600);
    else if (flag === '--spread') options.spreadSeconds = number('--spread', 0, 600);
    else if (flag === '--node-lease') options.nodeLeaseSeconds = Math.round(number('--node-lease', 10, 3600));
    else if (flag === '--worker-memory-limit') {
      const limit = Math.round(number('--worker-memory-limit', 0, 65536));
      if (limit !== 0 && limit < 128) throw new Error(`--worker-memory-limit "${value}" is too small for the worker: expected 0 (no limit) or at least 128 MiB`);
      options.workerMemoryLimitMiB = limit;
    }
    else if (flag === '--only' && (value === 'spot-guard' || value === 'naive')) {
      options.only = value;
      i++;
    } else if (flag === '--worker-env') {
      const match = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(value ?? '');
      if (!match?.[1]) throw new Error(`--worker-env "${value}" is not a setting: expected NAME=VALUE with an upper-case NAME`);
      options.workerEnv[match[1]] = match[2] ?? '';
      i++;
    } else {
      throw new Error(`unknown argument "${flag}": expected --nodes N, --groups G, --in-service-delay S, --spread S, --node-lease S, --only spot-guard|naive, --worker-env NAME=VALUE, --worker-memory-limit MiB`);
    }
  }
  if (options.groups > options.nodes) throw new Error(`--groups ${options.groups} is more than --nodes ${options.nodes}: expected at least one warned node per group`);
  return options;
}

/** The pairs of a run: the end-to-end groups for one (the shorthand), else bench-spot-<i> / bench-od-<i>, found by tags. */
function pairsOf(options: Options): { spot: string; onDemand: string }[] {
  if (options.groups === 1) return [{ spot: SPOT, onDemand: ON_DEMAND }];
  return Array.from({ length: options.groups }, (_, i) => ({ spot: `bench-spot-${i + 1}`, onDemand: `bench-od-${i + 1}` }));
}

/** The nodes of each spot group: N spread evenly, the first groups one more when it does not divide. */
const nodesOf = (options: Options, index: number): number => Math.floor(options.nodes / options.groups) + (index < options.nodes % options.groups ? 1 : 0);

/** The worker's memory cgroup while a strategy runs, so an interrupted run removes it too. */
let workerCgroup: ReturnType<typeof createMemoryCgroup> | undefined;

const maybeRound = (value: number | undefined): number | undefined => (value === undefined ? undefined : Math.round(value));

/** `work` on every item, `size` at a time: the way many clients would, without one burst of thousands of requests. */
async function inBatches<T>(items: T[], size: number, work: (item: T, index: number) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map((item, n) => work(item, i + n)));
}

type Counts = Awaited<ReturnType<EndToEnd['aws']['counts']>>;
type Timeline = Awaited<ReturnType<EndToEnd['aws']['timeline']>>;

/** What every phase of one strategy's run works with. */
interface Run {
  e2e: EndToEnd;
  strategy: Strategy;
  options: Options;
  log: (text: string) => void;
}

/** When the notices went out, and the peers' counters just before the first. */
interface Notices {
  firstNotice: number;
  lastNotice: number;
  cpuAtFirstNotice: CpuSeconds;
  requestsAtFirstNotice: Record<string, number>;
  writesAtFirstNotice: Record<string, number>;
}

/** The peers' counters when the run settled, as spent since the first notice. */
interface AtEnd {
  end: number;
  cpuSecondsByPeer: CpuSeconds;
  writesByOperation: Record<string, number>;
  workflowUpdates: number;
  kubernetesRequests: Record<string, number>;
  after: Counts;
}

/** What the workflows and the groups show at the end, before the worker stops. */
interface Observed {
  statuses: Map<string, RebalanceStatus>;
  peakMemory: number | undefined;
  /** Each spot group's desired capacity at the end. */
  spotDesired: Map<string, number>;
  timeline: Timeline;
  stages: Parameters<typeof summarize>[0];
}

/** A fresh cluster and the groups (N spot instances over the pairs, no on-demand ones); answers the spot instances to warn. */
async function setUpGroups({ e2e, options }: Run): Promise<string[]> {
  await e2e.aws.reset();
  // A fresh cluster: delete the nodes and pods the previous strategy left.
  await e2e.core.deleteCollectionNode({});
  await e2e.core.deleteCollectionNamespacedPod({ namespace: 'default', gracePeriodSeconds: 0 });
  await e2e.autoScaling.send(new CreateLaunchConfigurationCommand({ LaunchConfigurationName: 'nodes', ImageId: 'ami-12c6146b', InstanceType: 'm5.large' }));
  const warned: string[] = [];
  for (const [index, pair] of pairsOf(options).entries()) {
    const nodes = nodesOf(options, index);
    const tagged = options.groups > 1;
    const groups: { name: string; desired: number; tags: Record<string, string> }[] = [
      { name: pair.spot, desired: nodes, tags: tagged ? { [ENABLED_TAG]: 'true', [FALLBACK_TAG]: pair.onDemand } : {} },
      { name: pair.onDemand, desired: 0, tags: tagged ? { [ROLE_TAG]: ON_DEMAND_ROLE } : {} },
    ];
    for (const { name, desired, tags } of groups) {
      const Tags = Object.entries(tags).map(([Key, Value]) => ({ Key, Value, ResourceId: name, ResourceType: 'auto-scaling-group', PropagateAtLaunch: false }));
      await e2e.autoScaling.send(
        new CreateAutoScalingGroupCommand({ AutoScalingGroupName: name, LaunchConfigurationName: 'nodes', MinSize: 0, MaxSize: 4 * nodes + 10, DesiredCapacity: desired, AvailabilityZones: ['us-east-1a'], Tags }),
      );
      await e2e.aws.delay(name, options.inServiceDelaySeconds);
    }
    warned.push(...(await e2e.aws.instances(pair.spot)).instances.map((i) => i.id));
  }
  return warned;
}

/**
 * The kubelet stand-in: a Ready kwok node for every InService instance, one application pod on each warned node.
 * Kubelets register on their own, in parallel: so does the stand-in, a batch at a time. Answers how to stop it.
 */
async function startKubelet({ e2e, strategy, options }: Run, warned: string[]): Promise<{ stop: () => Promise<void> }> {
  const known = new Set<string>();
  const groups = pairsOf(options).flatMap((pair) => [pair.spot, pair.onDemand]);
  const sync = async (): Promise<void> => {
    const fresh: string[] = [];
    for (const group of groups) {
      for (const instance of (await e2e.aws.instances(group)).instances) {
        if (instance.state !== 'InService' || known.has(instance.id)) continue;
        known.add(instance.id);
        fresh.push(instance.id);
      }
    }
    // A node that exists already (its create answered late) is registered; any other failure is tried again.
    await inBatches(fresh, 25, (id) => e2e.registerNode(id).catch((error: unknown) => kubernetesStatus(error) === 409 || known.delete(id)));
  };
  await sync();
  await inBatches(warned, 50, (id, n) => e2e.pod(EndToEnd.nodeName(id), `${strategy}-app-${n}`));
  let syncing = true;
  const kubelet = (async () => {
    while (syncing) {
      await sync().catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  })();
  return {
    stop: async () => {
      syncing = false;
      await kubelet;
    },
  };
}

/** The strategy's worker, in a memory cgroup with --worker-memory-limit; answers the cgroup. */
async function startWorkerUnderTest({ e2e, strategy, options }: Run): Promise<ReturnType<typeof createMemoryCgroup> | undefined> {
  const cgroup = options.workerMemoryLimitMiB > 0 ? createMemoryCgroup(options.workerMemoryLimitMiB) : undefined;
  workerCgroup = cgroup;
  await e2e.startWorker({
    LOG_LEVEL: 'ERROR',
    SPOT_GUARD_MONITOR_INTERVAL: '30', // the production default (the end-to-end tests use 5 s)
    SPOT_GUARD_TERMINATE_DRAINED: 'false', // keeps the books readable: desired must end at N + N
    SPOT_GUARD_RECLAIM_POLL_INTERVAL: '3600',
    SPOT_GUARD_RECLAIM_WAIT: '3600',
    SPOT_GUARD_NODE_READY_TIMEOUT: '30',
    // More than one pair: found by their tags, as a cluster of many node groups would run it.
    ...(options.groups > 1 ? { SPOT_ASG_NAME: '', ON_DEMAND_ASG_NAME: '', SPOT_GUARD_PAIR_DISCOVERY: 'tags' } : {}),
    ...options.workerEnv,
  }, cgroup?.dir, strategies[strategy].workerEntry);
  return cgroup;
}

/** A rebalance notice for every warned node, spread evenly over --spread seconds, as the signaler would send them. */
async function sendNotices({ e2e, strategy, options, log }: Run, warned: string[]): Promise<Notices> {
  const cpuAtFirstNotice = cpuSnapshot();
  const requestsAtFirstNotice = await e2e.k8s.requestCounts();
  const writesAtFirstNotice = await e2e.temporalWrites();
  const firstNotice = Date.now();
  await Promise.all(
    warned.map(async (instanceId, n) => {
      await new Promise((resolve) => setTimeout(resolve, (n / Math.max(1, options.nodes - 1)) * options.spreadSeconds * 1000));
      await strategies[strategy].warn(e2e.client, TASK_QUEUE, { instanceId, nodeName: EndToEnd.nodeName(instanceId) });
    }),
  );
  const lastNotice = Date.now();
  log(`all notices sent in ${((lastNotice - firstNotice) / 1000).toFixed(1)} s`);
  return { firstNotice, lastNotice, cpuAtFirstNotice, requestsAtFirstNotice, writesAtFirstNotice };
}

/** Waits until every workflow is settled or the deadline passes; answers how many were still unsettled. */
async function waitUntilSettled({ e2e, strategy, options, log }: Run): Promise<number> {
  const { nodes } = options;
  // Done when every workflow has its replacement decided and its node tainted: past the phases below. Watched through
  // the SpotGuardPhase search attribute (visibility), not by querying each workflow, which would load the worker
  // under test with hundreds of queries per round.
  const unsettledPhases = ['verifying', 'adding-capacity', 'tainting'];
  // A workflow whose first task has not run yet has no phase at all: unsettled too.
  const unsettledQuery = `WorkflowType = '${strategies[strategy].workflowType}' AND ExecutionStatus = 'Running' AND (SpotGuardPhase IS NULL OR ${unsettledPhases.map((p) => `SpotGuardPhase = '${p}'`).join(' OR ')})`;
  // Long enough for a spot wait, an on-demand wait and their launches; a strategy still unsettled then is reported so.
  const deadline = Date.now() + (options.inServiceDelaySeconds + 420) * 1000;
  let unsettled = nodes;
  while (Date.now() < deadline) {
    unsettled = (await e2e.client.workflow.count(unsettledQuery).catch(() => ({ count: nodes }))).count;
    if (unsettled === 0) break;
    log(`${nodes - unsettled}/${nodes} settled`);
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
  return unsettled;
}

/** The peers' counters now, as spent since the first notice. */
async function measureAtEnd({ e2e }: Run, notices: Notices): Promise<AtEnd> {
  const end = Date.now();
  const cpuSecondsByPeer = cpuSpent(notices.cpuAtFirstNotice, cpuSnapshot());
  const requestsAtEnd = await e2e.k8s.requestCounts();
  const writesAtEnd = await e2e.temporalWrites();
  const writesByOperation = countsSince(notices.writesAtFirstNotice, writesAtEnd);
  const workflowUpdates = writesByOperation.UpdateWorkflowExecution ?? 0;
  const kubernetesRequests = countsSince(notices.requestsAtFirstNotice, requestsAtEnd);
  const after = await e2e.aws.counts();
  return { end, cpuSecondsByPeer, writesByOperation, workflowUpdates, kubernetesRequests, after };
}

/** Each workflow's status and stages, the worker's peak memory, the spot group and the launcher's timeline. */
async function observeWorkflows({ e2e, options }: Run, warned: string[]): Promise<Observed> {
  const statuses = new Map<string, RebalanceStatus>();
  await inBatches(warned, 50, async (id) => {
    // A query can time out on a server still busy with the wave: ask again before counting the workflow unknown.
    for (let attempt = 1; attempt <= 3 && !statuses.has(id); attempt++) {
      const status = await e2e.client.workflow.getHandle(rebalanceWorkflowId(id)).query(rebalanceStatusQuery).catch(() => undefined);
      if (status) statuses.set(id, status);
    }
  });
  const peakMemory = e2e.workerPeakMemoryMiB();
  const spotDesired = new Map<string, number>();
  for (const pair of pairsOf(options)) spotDesired.set(pair.spot, (await e2e.aws.instances(pair.spot)).desired);
  const timeline = await e2e.aws.timeline();
  const stages: Parameters<typeof summarize>[0] = [];
  await inBatches(warned, 25, async (id) => {
    stages.push(await stagesOf(e2e.client, rebalanceWorkflowId(id), timeline.inServiceAt, statuses.get(id)?.taintedAt).catch(() => undefined));
  });
  return { statuses, peakMemory, spotDesired, timeline, stages };
}

/** Stops the worker and removes its cgroup; answers the cgroup's limit, peak and OOM kills. */
async function stopWorkerUnderTest({ e2e }: Run, cgroup: ReturnType<typeof createMemoryCgroup> | undefined): Promise<StrategyResult['workerMemoryLimit']> {
  await e2e.stopWorker();
  const workerMemoryLimit = cgroup ? { limitMiB: cgroup.limitMiB, cgroupPeakMiB: maybeRound(cgroup.peakMiB()), oomKills: cgroup.oomKills() } : undefined;
  cgroup?.remove();
  workerCgroup = undefined;
  return workerMemoryLimit;
}

/** The workflows left waiting for AWS to reclaim their instance are not part of the next run. */
async function terminateWorkflows({ e2e }: Run, warned: string[]): Promise<void> {
  await Promise.all(
    warned.map((id) =>
      e2e.client.workflow
        .getHandle(rebalanceWorkflowId(id))
        .terminate('benchmark finished')
        .catch(() => undefined),
    ),
  );
  for await (const execution of e2e.client.workflow.list({ query: 'ExecutionStatus = "Running"' })) {
    await e2e.client.workflow.getHandle(execution.workflowId).terminate('benchmark finished').catch(() => undefined);
  }
}

/** The Auto Scaling requests from the first notice to the end: by action, in all, and per second. */
function autoScalingCalls(
  { options }: Run,
  before: Counts,
  { after, end }: AtEnd,
  timeline: Timeline,
  { firstNotice, lastNotice }: Notices,
): StrategyResult['autoScalingCalls'] {
  const byAction: Record<string, number> = {};
  for (const [action, count] of Object.entries(after.byAction)) {
    const delta = count - (before.byAction[action] ?? 0);
    if (delta > 0) byAction[action] = delta;
  }
  const total = Object.values(byAction).reduce((a, b) => a + b, 0);
  const seconds = Object.entries(timeline.perSecond)
    .map(([second, count]) => [Number(second), count] as const)
    .filter(([second]) => second * 1000 >= firstNotice - 1000 && second * 1000 <= end);
  const peakPerSecond = Math.max(0, ...seconds.map(([, count]) => count));
  // While waiting: from the last notice's increment (coalescing window included) until the run is settled.
  const waitFrom = lastNotice + 3000;
  const waiting = seconds.filter(([second]) => second * 1000 >= waitFrom);
  const waitSeconds = Math.max(1, (end - waitFrom) / 1000);
  const perSecondWhileWaiting = waiting.reduce((sum, [, count]) => sum + count, 0) / waitSeconds;
  const replacementsFrom = firstNotice + options.inServiceDelaySeconds * 1000;
  const pureWait = seconds.filter(([second]) => second * 1000 >= waitFrom && (second + 1) * 1000 <= replacementsFrom);
  const pureWaitSeconds = (replacementsFrom - waitFrom) / 1000;
  const perSecondBeforeReplacements = pureWaitSeconds >= 5 ? pureWait.reduce((sum, [, count]) => sum + count, 0) / Math.floor(pureWaitSeconds) : null;
  return {
    total,
    byAction,
    perWarnedNode: round(total / options.nodes, 2) ?? 0,
    peakPerSecond,
    perSecondWhileWaiting: round(perSecondWhileWaiting, 2) ?? 0,
    perSecondWhileWaitingPerGroup: round(perSecondWhileWaiting / options.groups, 3) ?? 0,
    perSecondBeforeReplacements: round(perSecondBeforeReplacements, 2),
  };
}

/**
 * Per replacement, seconds from InService to its node Ready, and from InService to the warned node tainted. When each
 * replacement's node turned Ready (second resolution) is read once from the API at the end.
 */
async function replacementLags({ e2e }: Run, finalStatuses: (RebalanceStatus | undefined)[], timeline: Timeline): Promise<{ readyLags: number[]; lags: number[] }> {
  const readyAt = new Map<string, number>();
  for (const node of (await e2e.core.listNode({})).items) {
    const instanceId = instanceIdFromProviderId(node.spec?.providerID);
    const ready = node.status?.conditions?.find((c) => c.type === 'Ready' && c.status === 'True')?.lastTransitionTime;
    if (instanceId && ready) readyAt.set(instanceId, new Date(ready).getTime() / 1000);
  }
  const readyLags: number[] = [];
  for (const status of finalStatuses) {
    const id = status?.replacementInstanceId;
    const inService = id ? timeline.inServiceAt[id] : undefined;
    const ready = id ? readyAt.get(id) : undefined;
    if (inService !== undefined && ready !== undefined) readyLags.push(Math.max(0, ready - inService));
  }
  const lags: number[] = [];
  for (const status of finalStatuses) {
    const inService = status?.replacementInstanceId ? timeline.inServiceAt[status.replacementInstanceId] : undefined;
    if (status?.taintedAt && inService !== undefined) lags.push(Date.parse(status.taintedAt) / 1000 - inService);
  }
  return { readyLags, lags };
}

/** When every spot group's desired capacity first reached twice its nodes (its every increment in): the latest of them. */
function allIncrementsAt({ options }: Run, timeline: Timeline): [number] | undefined {
  let latest = 0;
  for (const [index, pair] of pairsOf(options).entries()) {
    const reached = timeline.desiredLog.find(([, group, value]) => group === pair.spot && value >= 2 * nodesOf(options, index));
    if (!reached) return undefined;
    latest = Math.max(latest, reached[0]);
  }
  return [latest];
}

/** The strategy's report, from what was measured and observed. */
async function collectReport(
  run: Run,
  measured: { warned: string[]; before: Counts; notices: Notices; unsettled: number; atEnd: AtEnd; observed: Observed },
  workerMemoryLimit: StrategyResult['workerMemoryLimit'],
): Promise<StrategyResult> {
  const { strategy, options: { nodes } } = run;
  const { warned, before, notices: { firstNotice, lastNotice }, unsettled, atEnd, observed } = measured;
  const { statuses, spotDesired, timeline } = observed;
  const calls = autoScalingCalls(run, before, atEnd, timeline, measured.notices);
  const expectedDesired = 2 * nodes;
  const finalDesired = [...spotDesired.values()].reduce((a, b) => a + b, 0);
  const reached = allIncrementsAt(run, timeline);
  const finalStatuses = warned.map((id) => statuses.get(id));
  const taintedTimes = finalStatuses.map((s) => (s?.taintedAt ? Date.parse(s.taintedAt) : undefined));
  const allTainted = taintedTimes.every((t) => t !== undefined) ? Math.max(...taintedTimes) : undefined;
  const { readyLags, lags } = await replacementLags(run, finalStatuses, timeline);
  const replacements = finalStatuses.map((s) => s?.replacement);
  return {
    strategy,
    nodes,
    groups: run.options.groups,
    expectedDesired,
    finalDesired,
    lostIncrements: expectedDesired - finalDesired,
    autoScalingCalls: calls,
    secondsFromFirstNoticeToAllIncrements: reached ? round(reached[0] - firstNotice / 1000) : null,
    secondsFromLastNoticeToAllIncrements: reached ? round(reached[0] - lastNotice / 1000) : null,
    secondsFromFirstNoticeToAllTainted: allTainted ? round((allTainted - firstNotice) / 1000) : null,
    taintLagAfterReplacementInService: { ...spread(lags), measured: lags.length },
    taintLagStages: summarize(observed.stages),
    nodeReadyLagAfterInService: { ...spread(readyLags), measured: readyLags.length },
    replacements: {
      spot: replacements.filter((r) => r === 'spot').length,
      onDemand: replacements.filter((r) => r === 'on-demand').length,
      unavailable: replacements.filter((r) => r === 'capacity-unavailable').length,
      distinctInstances: new Set(finalStatuses.map((s) => s?.replacementInstanceId).filter(Boolean)).size,
    },
    workerPeakMemoryMiB: maybeRound(observed.peakMemory),
    ...(workerMemoryLimit ? { workerMemoryLimit } : {}),
    cpuSecondsByPeer: atEnd.cpuSecondsByPeer,
    temporalWrites: { workflowUpdates: atEnd.workflowUpdates, workflowUpdatesPerWarnedNode: round(atEnd.workflowUpdates / nodes, 1) ?? 0, byOperation: atEnd.writesByOperation },
    kubernetesRequests: atEnd.kubernetesRequests,
    settled: nodes - unsettled,
    wallSeconds: round((atEnd.end - firstNotice) / 1000) ?? 0,
  };
}

/** One strategy on a fresh cluster: set up, start its worker, warn every node, wait until settled, report. */
async function runStrategy(e2e: EndToEnd, strategy: Strategy, options: Options): Promise<StrategyResult> {
  const log = (text: string) => console.log(`[bench ${strategy} N=${options.nodes}${options.groups > 1 ? ` groups=${options.groups}` : ''}] ${text}`);
  const run: Run = { e2e, strategy, options, log };
  const warned = await setUpGroups(run);
  const kubelet = await startKubelet(run, warned);
  const cgroup = await startWorkerUnderTest(run);
  const before = await e2e.aws.counts();
  log(`${options.nodes} spot nodes in ${options.groups} group(s) ready; notices over ${options.spreadSeconds} s, replacements InService after ${options.inServiceDelaySeconds} s`);
  const notices = await sendNotices(run, warned);
  const unsettled = await waitUntilSettled(run);
  const atEnd = await measureAtEnd(run, notices);
  const observed = await observeWorkflows(run, warned);
  await kubelet.stop();
  const workerMemoryLimit = await stopWorkerUnderTest(run, cgroup);
  await terminateWorkflows(run, warned);
  const result = await collectReport(run, { warned, before, notices, unsettled, atEnd, observed }, workerMemoryLimit);
  log(JSON.stringify(result));
  return result;
}

/** One row per key of `counts` that any strategy has, the largest total first, at most `limit` rows. */
function busiestRows(results: StrategyResult[], counts: (r: StrategyResult) => Record<string, number>, label: string, limit = Infinity): [string, (r: StrategyResult) => string][] {
  const totals = new Map<string, number>();
  for (const r of results) for (const [key, count] of Object.entries(counts(r))) totals.set(key, (totals.get(key) ?? 0) + count);
  return [...totals.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([key]) => [`${label}: ${key}`, (r: StrategyResult) => String(counts(r)[key] ?? 0)]);
}

type SpreadKey = KeysOf<StageLags, Spread>;
const stageLabels: [SpreadKey, string][] = [
  ['noticedByPoll', 'InService → seen by the group poll'],
  ['answerDelivered', 'poll → answer delivered'],
  ['answerTaskQueued', 'answer → its workflow task started'],
  ['readyLookAndTaint', 'that task started → tainted (node-Ready look, taint)'],
];
const taskLabels: [SpreadKey, string][] = [
  ['workflowTaskQueued', 'rebalance workflow tasks: scheduled → started'],
  ['workflowTaskRunning', 'rebalance workflow tasks: started → completed'],
];
const stageRows: [string, (r: StrategyResult) => string][] = [
  ...stageLabels.map(([key, label]) => [`taint lag stage: ${label}, p50 / max (s)`, key] as const),
  ...taskLabels.map(([key, label]) => [`${label}, p50 / max (s)`, key] as const),
].map(([label, key]): [string, (r: StrategyResult) => string] => [label, (r) => `${r.taintLagStages[key].p50} / ${r.taintLagStages[key].max}`]);
stageRows.push(
  [
    'rebalance workflow tasks running when an answer arrived, p50 / max',
    (r) => `${r.taintLagStages.workflowTasksRunningAtAnswer.p50} / ${r.taintLagStages.workflowTasksRunningAtAnswer.max}`,
  ],
  [
    'rebalance workflow tasks timed out: not started in time (sticky queue) / not completed',
    (r) => `${r.taintLagStages.workflowTasksTimedOut.scheduleToStart} / ${r.taintLagStages.workflowTasksTimedOut.startToClose}`,
  ],
  ['nodes not Ready at the first look (waited in awaitNodeReady)', (r) => `${r.taintLagStages.waitedInActivity} of ${r.taintLagStages.measured}`],
);

function table(results: StrategyResult[]): string {
  const rows: [string, (r: StrategyResult) => string][] = [
    ['settled (replacement decided, node tainted)', (r) => `${r.settled} / ${r.nodes}`],
    ['final desired / expected', (r) => `${r.finalDesired} / ${r.expectedDesired}`],
    ['lost increments', (r) => String(r.lostIncrements)],
    ['Auto Scaling calls (total)', (r) => String(r.autoScalingCalls.total)],
    ['calls per warned node', (r) => String(r.autoScalingCalls.perWarnedNode)],
    ['peak calls per second', (r) => String(r.autoScalingCalls.peakPerSecond)],
    ['calls per second, last notice to end', (r) => String(r.autoScalingCalls.perSecondWhileWaiting)],
    ['calls per second and group, last notice to end', (r) => String(r.autoScalingCalls.perSecondWhileWaitingPerGroup)],
    ['calls per second, last notice to first InService', (r) => String(r.autoScalingCalls.perSecondBeforeReplacements ?? 'n/a')],
    ['s from last notice to all increments', (r) => String(r.secondsFromLastNoticeToAllIncrements ?? 'never')],
    ['s from first notice to all tainted', (r) => String(r.secondsFromFirstNoticeToAllTainted ?? 'never')],
    ['taint lag after InService p50 / max (s)', (r) => `${r.taintLagAfterReplacementInService.p50} / ${r.taintLagAfterReplacementInService.max}`],
    ['of which node Ready after InService p50 / max (s)', (r) => `${r.nodeReadyLagAfterInService.p50} / ${r.nodeReadyLagAfterInService.max}`],
    ...stageRows,
    ['replacements spot / on-demand / none', (r) => `${r.replacements.spot} / ${r.replacements.onDemand} / ${r.replacements.unavailable}`],
    ['distinct replacement instances', (r) => String(r.replacements.distinctInstances)],
    ['Temporal workflow updates (per warned node)', (r) => `${r.temporalWrites.workflowUpdates} (${r.temporalWrites.workflowUpdatesPerWarnedNode})`],
    ['worker peak memory (MiB)', (r) => String(r.workerPeakMemoryMiB ?? 'n/a')],
    ['worker memory limit: cgroup peak / limit (MiB), OOM kills', (r) =>
      r.workerMemoryLimit ? `${r.workerMemoryLimit.cgroupPeakMiB ?? 'n/a'} / ${r.workerMemoryLimit.limitMiB}, ${r.workerMemoryLimit.oomKills ?? 'n/a'}` : 'none'],
    ['wall seconds, first notice to settled', (r) => String(r.wallSeconds)],
    ...busiestRows(results, (r) => r.cpuSecondsByPeer, 'CPU s'),
    ...busiestRows(results, (r) => r.kubernetesRequests, 'Kubernetes requests', 10),
  ];
  const header = `| N = ${results[0]?.nodes}${(results[0]?.groups ?? 1) > 1 ? `, ${results[0]?.groups} groups` : ''} | ${results.map((r) => r.strategy).join(' | ')} |`;
  const lines = [header, `|---|${results.map(() => '---').join('|')}|`];
  for (const [label, cell] of rows) lines.push(`| ${label} | ${results.map(cell).join(' | ')} |`);
  return lines.join('\n');
}

async function main(): Promise<void> {
  let options: Options;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (error) {
    console.error(`bench: ${(error as Error).message}`);
    process.exit(2);
  }
  const e2e = await new EndToEnd({ nodeLeaseSeconds: options.nodeLeaseSeconds }).start();
  // Ctrl-C or a kill: stop the worker and the peers instead of leaving them running.
  const interrupted = (signal: NodeJS.Signals): void => {
    console.error(`bench: ${signal}: stopping the worker and the peers`);
    void e2e.stop().finally(() => {
      workerCgroup?.remove();
      process.exit(130);
    });
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  const results: StrategyResult[] = [];
  try {
    for (const strategy of ['spot-guard', 'naive'] as const) {
      if (options.only && options.only !== strategy) continue;
      results.push(await runStrategy(e2e, strategy, options));
    }
  } finally {
    await e2e.stop();
  }
  const [ours, naive] = results;
  const ratios =
    ours && naive
      ? {
          callsPerWarnedNodeNaiveOverSpotGuard: round(naive.autoScalingCalls.perWarnedNode / Math.max(0.01, ours.autoScalingCalls.perWarnedNode), 1),
          peakPerSecondNaiveOverSpotGuard: round(naive.autoScalingCalls.peakPerSecond / Math.max(1, ours.autoScalingCalls.peakPerSecond), 1),
          temporalUpdatesPerWarnedNodeNaiveOverSpotGuard: round(naive.temporalWrites.workflowUpdatesPerWarnedNode / Math.max(0.1, ours.temporalWrites.workflowUpdatesPerWarnedNode), 1),
        }
      : undefined;
  const report = { date: new Date().toISOString(), options, results, ratios };
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, `mass-interruption-n${options.nodes}${options.groups > 1 ? `-g${options.groups}` : ''}.json`);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`\n${table(results)}\n`);
  if (ratios) console.log(`naive / Spot Guard: ${ratios.callsPerWarnedNodeNaiveOverSpotGuard}x calls per warned node, ${ratios.peakPerSecondNaiveOverSpotGuard}x peak calls per second, ${ratios.temporalUpdatesPerWarnedNodeNaiveOverSpotGuard}x Temporal workflow updates per warned node`);
  console.log(`written to ${file}`);
}

await main();
