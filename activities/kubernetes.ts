// Kubernetes activities: verify, taint, cordon and drain nodes through the real API client. Idempotent: applying a
// taint that is there, cordoning a cordoned node or evicting a pod that is gone changes nothing.
import {
  type CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type V1Node,
  type V1Pod,
  type V1Taint,
} from '@kubernetes/client-node';
import { activityInfo, heartbeat, log, sleep } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { type DrainReport, type KubernetesActivities, type NodeLook, type PodsToLeave } from '../workflows/shared/activity-types.js';
import { CLUSTER_AUTOSCALER_SAFE_TO_EVICT_ANNOTATION, SAFE_TO_EVICT_ANNOTATION } from '../workflows/shared/ids.js';
import { type TaintSpec } from '../workflows/shared/settings.js';
import { FailureType, kubernetesCall, kubernetesStatus, nonRetryable } from './errors.js';
import type { NodeWatch } from './node-watch.js';
import { sharedRead } from './shared-read.js';
import { requireInstanceId, requireNodeName } from './validation.js';

/** The part of CoreV1Api the activities use; tests hand in a fake of just this. */
export type KubernetesCoreApi = Pick<
  CoreV1Api,
  'readNode' | 'listNode' | 'patchNode' | 'listPodForAllNamespaces' | 'createNamespacedPodEviction'
>;

export interface KubernetesActivityOptions {
  dryRun?: boolean;
  /** Pause between two eviction rounds while pods are blocked by a PDB or still terminating. */
  evictionRetrySeconds?: number;
  /**
   * A drain records its progress (heartbeats) only once an attempt has run this long: a drain done sooner, the usual
   * case, costs the Temporal server no heartbeat write. Well under the drain activities' 30 s heartbeat timeout.
   */
  firstHeartbeatAfterSeconds?: number;
  /** How long one node list answers "which node is this instance's" (a wave asks hundreds of times at once). */
  nodeListCacheMs?: number;
  /** The worker's watch on nodes: answers those questions without a list while it is in sync. */
  nodeWatch?: NodeWatch;
  /** Told of each eviction a PodDisruptionBudget refused (the metric spot_guard_evictions_refused_total). */
  onEvictionRefused?: () => void;
}

const MIRROR_POD_ANNOTATION = 'kubernetes.io/config.mirror';
const MAX_CONFLICT_RETRIES = 5;

/** The instance id a node's spec.providerID names (aws:///<zone>/<instance-id>), or undefined. */
export function instanceIdFromProviderId(providerID: string | undefined): string | undefined {
  const match = /^aws:\/\/\/[^/]*\/(i-[0-9a-f]+)$/.exec(providerID ?? '');
  return match?.[1];
}

export function isNodeReady(node: V1Node): boolean {
  return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** Why a pod is left alone by a drain, or undefined when it must be evicted. */
export function drainSkipReason(pod: V1Pod): string | undefined {
  if (pod.metadata?.annotations?.[MIRROR_POD_ANNOTATION] !== undefined) return 'mirror pod';
  if (pod.metadata?.ownerReferences?.some((o) => o.kind === 'DaemonSet' && o.controller !== false)) return 'DaemonSet pod';
  if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return 'finished pod';
  return undefined;
}

/** The annotation by which an operator forbids moving this pod (safe-to-evict "false"), or undefined. */
export function evictionForbiddenBy(pod: V1Pod): string | undefined {
  const annotations = pod.metadata?.annotations ?? {};
  return [SAFE_TO_EVICT_ANNOTATION, CLUSTER_AUTOSCALER_SAFE_TO_EVICT_ANNOTATION].find((key) => annotations[key] === 'false');
}

/**
 * The pod's emptyDir volumes: what kubectl drain calls local storage (any medium, memory too) and refuses to evict
 * without --delete-emptydir-data, since their data is gone with the pod.
 */
export function emptyDirVolumes(pod: V1Pod): string[] {
  return (pod.spec?.volumes ?? []).filter((v) => v.emptyDir !== undefined).map((v) => v.name);
}

/**
 * Why a drain told to leave these pods leaves this one on the node, or undefined when it evicts it. A pod without a
 * controller (kubectl drain's "declares no controller", refused without --force) is gone for good once evicted; an
 * emptyDir's data is gone even when a controller recreates the pod. An operator's safe-to-evict "false" keeps it,
 * "true" (ours) lets it go.
 */
export function leaveReason(pod: V1Pod, leave: PodsToLeave): string | undefined {
  const forbiddenBy = evictionForbiddenBy(pod);
  if (leave.onlyRecreatable && forbiddenBy) return `annotated ${forbiddenBy}=false: an operator forbade moving it`;
  if (pod.metadata?.annotations?.[SAFE_TO_EVICT_ANNOTATION] === 'true') return undefined;
  const reasons: string[] = [];
  if (leave.onlyRecreatable && !(pod.metadata?.ownerReferences ?? []).some((o) => o.controller === true)) {
    reasons.push('no controller: nothing recreates it');
  }
  const volumes = leave.keepLocalData ? emptyDirVolumes(pod) : [];
  if (volumes.length > 0) reasons.push(`emptyDir local storage (${volumes.join(', ')}): its data would be lost`);
  return reasons.length > 0 ? reasons.join('; ') : undefined;
}

/** A pod that will come back elsewhere after eviction, or that an operator allowed to go; never one it forbade to move. */
export function isRecreatable(pod: V1Pod): boolean {
  return leaveReason(pod, { onlyRecreatable: true }) === undefined;
}

export function withTaint(existing: V1Taint[] | undefined, taint: TaintSpec): V1Taint[] | undefined {
  const current = existing ?? [];
  if (current.some((t) => t.key === taint.key && t.effect === taint.effect && (t.value ?? '') === taint.value)) {
    return undefined; // already there: nothing to do
  }
  const others = current.filter((t) => !(t.key === taint.key && t.effect === taint.effect));
  return [...others, { key: taint.key, value: taint.value, effect: taint.effect }];
}

const podKey = (pod: V1Pod): string => `${pod.metadata?.namespace}/${pod.metadata?.name}`;

const NO_NODE: NodeLook = { nodeName: undefined, ready: false };

/** An absolute deadline decided by the workflow, in epoch milliseconds. */
function parseDeadline(text: string, what: string): number {
  const deadline = Date.parse(text);
  if (Number.isNaN(deadline)) throw nonRetryable(FailureType.invalidInput, `${what} deadline "${text}" is not an ISO 8601 time`);
  return deadline;
}

// Node.spec.taints has no patch merge key: a strategic-merge patch replaces the whole list. Send the full, merged
// list together with the resourceVersion it was computed from, so a concurrent change makes the API answer 409.
const STRATEGIC_MERGE = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);

// resourceVersion "0": served from the API server's watch cache instead of a quorum read of etcd, and a pod list by
// spec.nodeName uses the cache's node index instead of reading every pod in the cluster. These lists are looked at
// again and again until a condition holds (a new node Ready, a node empty), so a view milliseconds old is enough.
// Measured in a wave of 500 nodes: kube-apiserver was the busiest process on the machine before this.
const FROM_WATCH_CACHE = { resourceVersion: '0' };

/** What every Kubernetes activity works with: the client, the options, and the node index they share. */
interface KubernetesContext {
  core: KubernetesCoreApi;
  dryRun: boolean;
  evictionRetryMs: number;
  firstHeartbeatAfterMs: number;
  nodeListCacheMs: number;
  /** Node name and readiness by instance id: the node watch's while it is in sync, else a list shared for a moment. */
  nodeIndex: () => Promise<ReadonlyMap<string, NodeLook>>;
  /** The same from a list made now, for a look a termination rests on. */
  freshNodeIndex: () => Promise<ReadonlyMap<string, NodeLook>>;
  onEvictionRefused: () => void;
}

function kubernetesContext(core: KubernetesCoreApi, options: KubernetesActivityOptions): KubernetesContext {
  const nodeListCacheMs = options.nodeListCacheMs ?? 1_000;
  /** Node name and readiness by instance id, from one list shared by every caller within the cache period. */
  const freshNodeIndex = async (): Promise<ReadonlyMap<string, NodeLook>> => {
    const list = await kubernetesCall('list nodes', () => core.listNode(FROM_WATCH_CACHE));
    return new Map(list.items.map((n) => [instanceIdFromProviderId(n.spec?.providerID) ?? '', { nodeName: n.metadata?.name, ready: isNodeReady(n) }]));
  };
  const listedNodeIndex = sharedRead(nodeListCacheMs, freshNodeIndex);
  return {
    core,
    dryRun: options.dryRun ?? false,
    evictionRetryMs: (options.evictionRetrySeconds ?? 5) * 1000,
    firstHeartbeatAfterMs: (options.firstHeartbeatAfterSeconds ?? 10) * 1000,
    nodeListCacheMs,
    nodeIndex: async () => options.nodeWatch?.current() ?? listedNodeIndex('all'),
    freshNodeIndex,
    onEvictionRefused: options.onEvictionRefused ?? (() => undefined),
  };
}

async function readNode(ctx: KubernetesContext, nodeName: string): Promise<V1Node> {
  requireNodeName(nodeName);
  try {
    return await ctx.core.readNode({ name: nodeName });
  } catch (error) {
    if (kubernetesStatus(error) === 404) {
      throw nonRetryable(FailureType.nodeNotFound, `Kubernetes node "${nodeName}" does not exist`);
    }
    return kubernetesCall(`read node ${nodeName}`, () => Promise.reject(error));
  }
}

/** Read for a change after verification: a node deleted meanwhile (reclaimed, scaled in) is no error, just gone. */
async function readNodeIfPresent(ctx: KubernetesContext, nodeName: string): Promise<V1Node | undefined> {
  try {
    return await readNode(ctx, nodeName);
  } catch (error) {
    if (error instanceof ApplicationFailure && error.type === FailureType.nodeNotFound) return undefined;
    throw error;
  }
}

async function listPodsOnNode(ctx: KubernetesContext, nodeName: string): Promise<V1Pod[]> {
  const list = await kubernetesCall(`list the pods on node ${nodeName}`, () =>
    ctx.core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${nodeName}`, ...FROM_WATCH_CACHE }),
  );
  return list.items;
}

/** Evicts one pod; answers how the API server took it. */
async function evict(ctx: KubernetesContext, pod: V1Pod): Promise<'evicted' | 'blocked' | 'gone'> {
  const name = pod.metadata?.name ?? '';
  const namespace = pod.metadata?.namespace ?? 'default';
  if (ctx.dryRun) {
    log.info('dry run: would evict pod', { pod: podKey(pod) });
    return 'evicted';
  }
  try {
    await ctx.core.createNamespacedPodEviction({
      name,
      namespace,
      body: { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name, namespace } },
    });
    return 'evicted';
  } catch (error) {
    const status = kubernetesStatus(error);
    if (status === 404) return 'gone';
    // 429: a PodDisruptionBudget allows no disruption right now. 500 "more than one PodDisruptionBudget": refused
    // until the budgets are fixed. Either way the pod stays, and the drain tries again on its next round.
    if (status === 429) ctx.onEvictionRefused();
    if (status === 429 || status === 500) return 'blocked';
    return kubernetesCall(`evict pod ${namespace}/${name}`, () => Promise.reject(error));
  }
}

/** The node exists and its providerID names this very instance: a request about a node came from its instance. */
async function verifyNode(ctx: KubernetesContext, input: { nodeName: string; instanceId: string }): Promise<{ providerID: string }> {
  requireInstanceId(input.instanceId);
  const node = await readNode(ctx, input.nodeName);
  const providerID = node.spec?.providerID ?? '';
  const named = instanceIdFromProviderId(providerID);
  if (named !== input.instanceId) {
    throw nonRetryable(
      FailureType.instanceMismatch,
      `node "${input.nodeName}" has providerID "${providerID}", which ${named ? `names instance ${named}` : 'names no EC2 instance'}, not ${input.instanceId}; refusing to act on it`,
    );
  }
  return { providerID };
}

/** The node of an instance (matched by providerID) and whether it is Ready; `fresh`: from a list made now. */
async function findNodeForInstance(ctx: KubernetesContext, input: { instanceId: string; fresh?: boolean }): Promise<NodeLook> {
  requireInstanceId(input.instanceId);
  return (await (input.fresh ? ctx.freshNodeIndex() : ctx.nodeIndex())).get(input.instanceId) ?? NO_NODE;
}

/**
 * Waits until the instance's node is Ready or the deadline passes, looking at the shared node index once a second
 * and answering what it saw last. One activity for the whole wait: a wave's hundreds of replacements are watched
 * without a workflow task (and its history events) per look. The deadline is absolute, so a retry after a crash
 * waits only for what is left of it. A failed list is no news: the next look tries again.
 */
async function awaitNodeReady(ctx: KubernetesContext, input: { instanceId: string; deadline: string }): Promise<NodeLook> {
  requireInstanceId(input.instanceId);
  const deadline = parseDeadline(input.deadline, 'node-ready');
  let seen = NO_NODE;
  for (;;) {
    seen = (await ctx.nodeIndex().catch(() => undefined))?.get(input.instanceId) ?? seen;
    const left = deadline - Date.now();
    if (seen.ready || left <= 0) return seen;
    // A local activity (the workflow's first, short look) has no heartbeat to record.
    if (!activityInfo().isLocal) heartbeat(seen);
    await sleep(Math.min(ctx.nodeListCacheMs, left));
  }
}

/**
 * The instances whose Kubernetes node is missing or not Ready. Nodes carrying one of `ignoreTaintKeys` (nodes
 * Spot Guard itself is draining) are left out of the judgement.
 */
async function findUnreadyNodes(
  ctx: KubernetesContext,
  input: { instanceIds: string[]; ignoreTaintKeys: string[] },
): Promise<{ unready: string[]; ignored: string[] }> {
  input.instanceIds.forEach(requireInstanceId);
  const list = await kubernetesCall('list nodes', () => ctx.core.listNode(FROM_WATCH_CACHE));
  const byInstance = new Map(list.items.map((n) => [instanceIdFromProviderId(n.spec?.providerID), n]));
  const unready: string[] = [];
  const ignored: string[] = [];
  for (const instanceId of input.instanceIds) {
    const node = byInstance.get(instanceId);
    if (!node) unready.push(`${instanceId} has no Kubernetes node`);
    else if (node.spec?.taints?.some((t) => input.ignoreTaintKeys.includes(t.key))) ignored.push(node.metadata?.name ?? instanceId);
    else if (!isNodeReady(node)) unready.push(`node ${node.metadata?.name} (${instanceId}) is not Ready`);
  }
  return { unready, ignored };
}

/** Adds the taint (merged by key and effect with the node's others); a node that has it already is left as it is. */
async function taintNode(
  ctx: KubernetesContext,
  input: { nodeName: string; taint: TaintSpec },
): Promise<{ alreadyTainted: boolean; nodeGone?: boolean }> {
  for (let attempt = 1; ; attempt++) {
    const node = await readNodeIfPresent(ctx, input.nodeName);
    if (!node) return { alreadyTainted: false, nodeGone: true };
    const taints = withTaint(node.spec?.taints, input.taint);
    if (!taints) return { alreadyTainted: true };
    if (ctx.dryRun) {
      log.info('dry run: would taint node', { node: input.nodeName, taint: input.taint });
      return { alreadyTainted: false };
    }
    try {
      await ctx.core.patchNode(
        {
          name: input.nodeName,
          body: { metadata: { resourceVersion: node.metadata?.resourceVersion }, spec: { taints } },
        },
        STRATEGIC_MERGE,
      );
      log.info('node tainted', { node: input.nodeName, taint: `${input.taint.key}=${input.taint.value}:${input.taint.effect}` });
      return { alreadyTainted: false };
    } catch (error) {
      if (kubernetesStatus(error) === 409 && attempt < MAX_CONFLICT_RETRIES) continue; // changed under us: re-read
      return kubernetesCall(`taint node ${input.nodeName}`, () => Promise.reject(error));
    }
  }
}

/**
 * Undoes a scale-down that will not happen: removes the taint with this key and, unless `uncordon` is false (the node
 * was cordoned before Spot Guard touched it), makes the node schedulable.
 */
async function releaseNode(ctx: KubernetesContext, input: { nodeName: string; taintKey: string; uncordon?: boolean }): Promise<{ nodeGone?: boolean }> {
  const uncordon = input.uncordon ?? true;
  for (let attempt = 1; ; attempt++) {
    const node = await readNodeIfPresent(ctx, input.nodeName);
    if (!node) return { nodeGone: true };
    const taints = (node.spec?.taints ?? []).filter((t) => t.key !== input.taintKey);
    if (taints.length === (node.spec?.taints ?? []).length && !(uncordon && node.spec?.unschedulable)) return {};
    if (ctx.dryRun) {
      log.info('dry run: would release node', input);
      return {};
    }
    try {
      await ctx.core.patchNode(
        { name: input.nodeName, body: { metadata: { resourceVersion: node.metadata?.resourceVersion }, spec: { taints, ...(uncordon ? { unschedulable: false } : {}) } } },
        STRATEGIC_MERGE,
      );
      log.info(uncordon ? 'node released: untainted and schedulable again' : 'node released: untainted, left cordoned as it was before Spot Guard', input);
      return {};
    } catch (error) {
      if (kubernetesStatus(error) === 409 && attempt < MAX_CONFLICT_RETRIES) continue;
      return kubernetesCall(`release node ${input.nodeName}`, () => Promise.reject(error));
    }
  }
}

/** Marks the node unschedulable (kubectl cordon). */
async function cordonNode(ctx: KubernetesContext, input: { nodeName: string }): Promise<{ alreadyCordoned: boolean; nodeGone?: boolean }> {
  const node = await readNodeIfPresent(ctx, input.nodeName);
  if (!node) return { alreadyCordoned: false, nodeGone: true };
  if (node.spec?.unschedulable) return { alreadyCordoned: true };
  if (ctx.dryRun) {
    log.info('dry run: would cordon node', { node: input.nodeName });
    return { alreadyCordoned: false };
  }
  await kubernetesCall(`cordon node ${input.nodeName}`, () =>
    ctx.core.patchNode({ name: input.nodeName, body: { spec: { unschedulable: true } } }, STRATEGIC_MERGE),
  );
  log.info('node cordoned', { node: input.nodeName });
  return { alreadyCordoned: false };
}

type DrainProgress = { evicted: string[]; remaining: string[]; blocked: string[] };

/**
 * One pass of a drain over the pods on the node: skips the pods no drain evicts, leaves those it was told to leave,
 * evicts the others (adding each evicted pod to `evicted`), and answers what it skipped and left, what it evicts that
 * is still on the node, and what a budget blocked.
 */
async function drainRound(
  ctx: KubernetesContext,
  input: { nodeName: string } & PodsToLeave,
  evicted: Set<string>,
  recordProgress: (progress: DrainProgress) => void,
): Promise<{ skipped: string[]; left: string[]; remaining: string[]; blocked: string[] }> {
  const pods = await listPodsOnNode(ctx, input.nodeName);
  const skipped: string[] = [];
  const left: string[] = [];
  const remaining: string[] = [];
  const blocked: string[] = [];
  for (const pod of pods) {
    const reason = drainSkipReason(pod);
    if (reason) {
      skipped.push(`${podKey(pod)} (${reason})`);
      continue;
    }
    if (pod.metadata?.deletionTimestamp) {
      remaining.push(podKey(pod)); // evicted, terminating: wait for it to be gone
      continue;
    }
    const leaveIt = leaveReason(pod, input);
    if (leaveIt) {
      left.push(`${podKey(pod)} (${leaveIt})`);
      continue;
    }
    remaining.push(podKey(pod));
    const outcome = await evict(ctx, pod);
    if (outcome === 'evicted') evicted.add(podKey(pod));
    if (outcome === 'blocked') blocked.push(podKey(pod));
    recordProgress({ evicted: [...evicted], remaining, blocked }); // per pod: a large node never misses a heartbeat
  }
  return { skipped, left, remaining, blocked };
}

/**
 * Drains the node through the Eviction API until no pod it evicts is left on it or the deadline passes; the pods it
 * was told to leave are not waited for, and make the drain incomplete. Pods a PodDisruptionBudget protects are
 * retried every round. The deadline is absolute (decided by the workflow), so a retried attempt does not extend the
 * drain; heartbeats carry the progress for that attempt and the Temporal UI.
 */
async function evictPods(ctx: KubernetesContext, input: { nodeName: string; deadline: string } & PodsToLeave): Promise<DrainReport> {
  requireNodeName(input.nodeName);
  const deadline = parseDeadline(input.deadline, 'drain');
  const previous = (activityInfo().heartbeatDetails as { evicted?: string[] } | undefined)?.evicted ?? [];
  const evicted = new Set<string>(previous);
  const attemptStarted = Date.now();
  const recordProgress = (progress: DrainProgress): void => {
    if (Date.now() - attemptStarted >= ctx.firstHeartbeatAfterMs) heartbeat(progress);
  };
  for (;;) {
    const { skipped, left, remaining, blocked } = await drainRound(ctx, input, evicted, recordProgress);
    const report: DrainReport = { evicted: [...evicted], skipped, left, remaining, complete: (remaining.length === 0 && left.length === 0) || ctx.dryRun };
    recordProgress({ evicted: report.evicted, remaining, blocked });
    if (report.complete) {
      log.info('node drained', { node: input.nodeName, evicted: report.evicted.length, skipped: skipped.length });
      return report;
    }
    if (remaining.length === 0) {
      log.info('node drained but for the pods it was told to leave', { node: input.nodeName, evicted: report.evicted.length, left });
      return report;
    }
    if (Date.now() >= deadline) {
      log.warn('drain timed out with pods left on the node', { node: input.nodeName, remaining, blocked });
      return report;
    }
    await sleep(Math.min(ctx.evictionRetryMs, Math.max(0, deadline - Date.now())));
  }
}

/** The Kubernetes activities over this client; each is documented on its function above. */
export function createKubernetesActivities(core: KubernetesCoreApi, options: KubernetesActivityOptions = {}): KubernetesActivities {
  const ctx = kubernetesContext(core, options);
  return {
    verifyNode: (input) => verifyNode(ctx, input),
    findNodeForInstance: (input) => findNodeForInstance(ctx, input),
    awaitNodeReady: (input) => awaitNodeReady(ctx, input),
    findUnreadyNodes: (input) => findUnreadyNodes(ctx, input),
    taintNode: (input) => taintNode(ctx, input),
    releaseNode: (input) => releaseNode(ctx, input),
    cordonNode: (input) => cordonNode(ctx, input),
    evictPods: (input) => evictPods(ctx, input),
  };
}

export type { KubernetesActivities } from '../workflows/shared/activity-types.js';
