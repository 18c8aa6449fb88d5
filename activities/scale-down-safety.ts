// Activities the revert-to-spot monitor uses before and after removing an on-demand node: is it safe to move its
// pods (controllers, PodDisruptionBudgets, room elsewhere), and have the moved pods landed?
import type { CoreV1Api, PolicyV1Api, V1Node, V1Pod, V1PodDisruptionBudget } from '@kubernetes/client-node';
import { heartbeat, log, sleep } from '@temporalio/activity';
import type { PodOwner, ScaleDownSafety, ScaleDownSafetyActivities } from '../workflows/shared/activity-types.js';
import { SAFE_TO_EVICT_ANNOTATION } from '../workflows/shared/ids.js';
import { FailureType, kubernetesCall, nonRetryable } from './errors.js';
import {
  formatResources,
  nodeAllocatable,
  podController,
  podRequests,
  type Resources,
  selectorMatches,
} from './kubernetes-resources.js';
import { drainSkipReason, evictionForbiddenBy, isNodeReady, isRecreatable } from './kubernetes.js';
import { requireNodeName } from './validation.js';

export type KubernetesPolicyApi = Pick<PolicyV1Api, 'listPodDisruptionBudgetForAllNamespaces'>;

export type { ScaleDownSafety, ScaleDownSafetyActivities } from '../workflows/shared/activity-types.js';

const podKey = (pod: V1Pod): string => `${pod.metadata?.namespace}/${pod.metadata?.name}`;
const isTerminal = (pod: V1Pod): boolean => pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed';

/** What the scale-down safety activities work with: the clients and how often to look again. */
interface ScaleDownSafetyContext {
  core: Pick<CoreV1Api, 'listPodForAllNamespaces' | 'listNode'>;
  policy: KubernetesPolicyApi;
  pollMs: number;
}

/**
 * Whether the node's pods can go: each has a controller (or is explicitly allowed to go), no PodDisruptionBudget
 * would drop below its budget, and the other schedulable nodes have room for their requests plus the buffer.
 */
async function assessScaleDownSafety(
  ctx: ScaleDownSafetyContext,
  input: { nodeName: string; bufferPercent: number },
): Promise<ScaleDownSafety> {
  requireNodeName(input.nodeName);
  if (!Number.isFinite(input.bufferPercent) || input.bufferPercent < 0) {
    throw nonRetryable(FailureType.invalidInput, `buffer ${input.bufferPercent}% is not a percentage >= 0`);
  }
  const [pods, nodes, budgets] = await Promise.all([
    kubernetesCall('list pods', () => ctx.core.listPodForAllNamespaces({})).then((l) => l.items),
    kubernetesCall('list nodes', () => ctx.core.listNode({})).then((l) => l.items),
    kubernetesCall('list PodDisruptionBudgets', () => ctx.policy.listPodDisruptionBudgetForAllNamespaces({})).then((l) => l.items),
  ]);
  // Pods already terminating (an earlier, incomplete drain) are leaving anyway: they need no room elsewhere.
  // Pods waiting for a node mean the cluster is short of room already: no node may go now.
  const unscheduled = pods.filter((p) => !p.spec?.nodeName && p.status?.phase === 'Pending' && p.metadata?.deletionTimestamp === undefined);
  if (unscheduled.length > 0) {
    return {
      safe: false,
      reason: `${unscheduled.length} pod(s) are Pending without a node (${unscheduled.slice(0, 5).map(podKey).join(', ')}): the cluster needs its capacity`,
      pods: [],
      owners: [],
    };
  }
  const moving = pods.filter(
    (p) => p.spec?.nodeName === input.nodeName && drainSkipReason(p) === undefined && p.metadata?.deletionTimestamp === undefined,
  );
  const owners = uniqueOwners(moving);
  const verdict = (safe: boolean, reason: string): ScaleDownSafety => ({ safe, reason, pods: moving.map(podKey), owners });
  if (moving.length === 0) return verdict(true, `node ${input.nodeName} has no pods to move`);
  const refusal = podRefusal(moving, budgets) ?? budgetRefusal(moving, budgets, input.nodeName);
  if (refusal !== undefined) return verdict(false, refusal);
  const room = roomVerdict(nodes, pods, moving, input);
  return verdict(room.safe, room.reason);
}

/** Why one of the pods to move cannot be evicted (nothing recreates it, or the Eviction API refuses it), or undefined. */
function podRefusal(moving: V1Pod[], budgets: V1PodDisruptionBudget[]): string | undefined {
  for (const pod of moving) {
    const forbiddenBy = evictionForbiddenBy(pod);
    if (forbiddenBy) return `pod ${podKey(pod)} is annotated ${forbiddenBy}=false: it is not to be moved`;
    if (!isRecreatable(pod)) {
      return `pod ${podKey(pod)} has no controller to recreate it elsewhere (annotate it ${SAFE_TO_EVICT_ANNOTATION}=true to let it go)`;
    }
    const covering = budgets.filter((b) => b.metadata?.namespace === pod.metadata?.namespace && selectorMatches(b.spec?.selector, pod.metadata?.labels));
    if (covering.length > 1) {
      // The Eviction API refuses such pods (HTTP 500) whatever the budgets say.
      return `pod ${podKey(pod)} is covered by ${covering.length} PodDisruptionBudgets (${covering.map((b) => b.metadata?.name).join(', ')}); the Eviction API refuses to evict it`;
    }
  }
  return undefined;
}

/** Why a PodDisruptionBudget does not let the pods to move go now (no current status, too few disruptions), or undefined. */
function budgetRefusal(moving: V1Pod[], budgets: V1PodDisruptionBudget[], nodeName: string): string | undefined {
  for (const budget of budgets) {
    const namespace = budget.metadata?.namespace;
    const covered = moving.filter((p) => p.metadata?.namespace === namespace && selectorMatches(budget.spec?.selector, p.metadata?.labels));
    if (covered.length === 0) continue;
    const name = `${namespace}/${budget.metadata?.name}`;
    const observed = budget.status?.observedGeneration;
    if (observed === undefined || observed < (budget.metadata?.generation ?? 0)) {
      return `PodDisruptionBudget ${name} has no current status yet (is the disruption controller running?)`;
    }
    const allowed = budget.status?.disruptionsAllowed ?? 0;
    if (allowed < covered.length) {
      return `PodDisruptionBudget ${name} allows ${allowed} disruption(s) but ${covered.length} of its pods are on node ${nodeName}`;
    }
  }
  return undefined;
}

/** Whether the other schedulable nodes have room for the pods to move: in all (plus the buffer) and each on one node. */
function roomVerdict(
  nodes: V1Node[],
  pods: V1Pod[],
  moving: V1Pod[],
  { nodeName, bufferPercent }: { nodeName: string; bufferPercent: number },
): { safe: boolean; reason: string } {
  const room = freeRoom(nodes, pods, nodeName);
  const needed = moving.map(podRequests).reduce(add, { cpu: 0, memory: 0 });
  const withBuffer = scale(needed, 1 + bufferPercent / 100);
  if (withBuffer.cpu > room.total.cpu || withBuffer.memory > room.total.memory) {
    return { safe: false, reason: `not enough room: the pods need ${formatResources(needed)} plus ${bufferPercent}% buffer, the other schedulable nodes have ${formatResources(room.total)} free` };
  }
  for (const pod of moving) {
    const requests = podRequests(pod);
    if (!room.perNode.some((free) => free.cpu >= requests.cpu && free.memory >= requests.memory)) {
      return { safe: false, reason: `not enough room: pod ${podKey(pod)} (${formatResources(requests)}) fits on no other schedulable node` };
    }
  }
  return { safe: true, reason: `${moving.length} pod(s) can move: ${formatResources(needed)} plus ${bufferPercent}% buffer fits in ${formatResources(room.total)} free` };
}

/**
 * Waits until the moved pods' controllers have all their pods running and ready somewhere else, or the deadline.
 */
async function awaitPodsRescheduled(
  ctx: ScaleDownSafetyContext,
  input: { owners: PodOwner[]; nodeName: string; deadline: string; maxSeconds: number },
): Promise<{ settled: boolean; waitingFor: string[] }> {
  const absolute = Date.parse(input.deadline);
  if (Number.isNaN(absolute)) throw nonRetryable(FailureType.invalidInput, `deadline "${input.deadline}" is not an ISO 8601 time`);
  // The workflow's deadline, capped by the wait itself: the same instant in production, and still bounded where
  // the workflow clock runs ahead of this one (time-skipping tests).
  const deadline = Math.min(absolute, Date.now() + input.maxSeconds * 1000);
  const uids = new Set(input.owners.map((o) => o.uid));
  for (;;) {
    const pods = await kubernetesCall('list pods', () => ctx.core.listPodForAllNamespaces({})).then((l) => l.items);
    const waitingFor = pods
      .filter((p) => !isTerminal(p) && uids.has(podController(p)?.uid ?? ''))
      .filter((p) => p.spec?.nodeName === input.nodeName || (p.metadata?.deletionTimestamp === undefined && !isPodReady(p)))
      .map(podKey);
    heartbeat({ waitingFor });
    if (waitingFor.length === 0) return { settled: true, waitingFor };
    if (Date.now() >= deadline) {
      log.warn('moved pods are not all running elsewhere yet', { node: input.nodeName, waitingFor });
      return { settled: false, waitingFor };
    }
    await sleep(Math.min(ctx.pollMs, Math.max(0, deadline - Date.now())));
  }
}

/** The scale-down safety activities over these clients; each is documented on its function above. */
export function createScaleDownSafetyActivities(
  core: Pick<CoreV1Api, 'listPodForAllNamespaces' | 'listNode'>,
  policy: KubernetesPolicyApi,
  options: { pollSeconds?: number } = {},
): ScaleDownSafetyActivities {
  const ctx: ScaleDownSafetyContext = { core, policy, pollMs: (options.pollSeconds ?? 5) * 1000 };
  return {
    assessScaleDownSafety: (input) => assessScaleDownSafety(ctx, input),
    awaitPodsRescheduled: (input) => awaitPodsRescheduled(ctx, input),
  };
}

function isPodReady(pod: V1Pod): boolean {
  return pod.status?.phase === 'Running' && (pod.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? true);
}

function uniqueOwners(pods: V1Pod[]): PodOwner[] {
  const byUid = new Map<string, PodOwner>();
  for (const pod of pods) {
    const owner = podController(pod);
    if (owner) byUid.set(owner.uid, owner);
  }
  return [...byUid.values()];
}

const add = (a: Resources, b: Resources): Resources => ({ cpu: a.cpu + b.cpu, memory: a.memory + b.memory });
const scale = (a: Resources, factor: number): Resources => ({ cpu: a.cpu * factor, memory: a.memory * factor });

/**
 * Free room on the nodes that could take the pods: Ready, schedulable, not the node being emptied, and without a
 * NoSchedule/NoExecute taint (conservative: the pods may not tolerate it).
 */
function freeRoom(nodes: V1Node[], pods: V1Pod[], leaving: string): { total: Resources; perNode: Resources[] } {
  const candidates = nodes.filter(
    (n) =>
      n.metadata?.name !== leaving &&
      isNodeReady(n) &&
      !n.spec?.unschedulable &&
      !(n.spec?.taints ?? []).some((t) => t.effect === 'NoSchedule' || t.effect === 'NoExecute'),
  );
  const perNode = candidates.map((node) => {
    const used = pods
      .filter((p) => p.spec?.nodeName === node.metadata?.name && !isTerminal(p))
      .map(podRequests)
      .reduce(add, { cpu: 0, memory: 0 });
    const allocatable = nodeAllocatable(node);
    return { cpu: Math.max(0, allocatable.cpu - used.cpu), memory: Math.max(0, allocatable.memory - used.memory) };
  });
  return { total: perNode.reduce(add, { cpu: 0, memory: 0 }), perNode };
}
