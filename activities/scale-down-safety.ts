// Activities the revert-to-spot monitor uses before and after removing an on-demand node: is it safe to move its
// pods (controllers, PodDisruptionBudgets, room elsewhere), and have the moved pods landed?
import type { CoreV1Api, PolicyV1Api, V1Node, V1Pod } from '@kubernetes/client-node';
import { heartbeat, log, sleep } from '@temporalio/activity';
import type { PodOwner, ScaleDownSafety } from '../workflows/shared/activity-types.js';
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
import { drainSkipReason, isNodeReady, isRecreatable } from './kubernetes.js';
import { requireNodeName } from './validation.js';

export type KubernetesPolicyApi = Pick<PolicyV1Api, 'listPodDisruptionBudgetForAllNamespaces'>;

export type { ScaleDownSafety } from '../workflows/shared/activity-types.js';

const podKey = (pod: V1Pod): string => `${pod.metadata?.namespace}/${pod.metadata?.name}`;
const isTerminal = (pod: V1Pod): boolean => pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed';

export function createScaleDownSafetyActivities(
  core: Pick<CoreV1Api, 'listPodForAllNamespaces' | 'listNode'>,
  policy: KubernetesPolicyApi,
  options: { pollSeconds?: number } = {},
) {
  const pollMs = (options.pollSeconds ?? 5) * 1000;

  return {
    /**
     * Whether the node's pods can go: each has a controller (or is explicitly allowed to go), no PodDisruptionBudget
     * would drop below its budget, and the other schedulable nodes have room for their requests plus the buffer.
     */
    async assessScaleDownSafety(input: { nodeName: string; bufferPercent: number }): Promise<ScaleDownSafety> {
      requireNodeName(input.nodeName);
      if (!Number.isFinite(input.bufferPercent) || input.bufferPercent < 0) {
        throw nonRetryable(FailureType.invalidInput, `buffer ${input.bufferPercent}% is not a percentage >= 0`);
      }
      const [pods, nodes, budgets] = await Promise.all([
        kubernetesCall('list pods', () => core.listPodForAllNamespaces({})).then((l) => l.items),
        kubernetesCall('list nodes', () => core.listNode({})).then((l) => l.items),
        kubernetesCall('list PodDisruptionBudgets', () => policy.listPodDisruptionBudgetForAllNamespaces({})).then((l) => l.items),
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

      for (const pod of moving) {
        if (!isRecreatable(pod)) {
          return verdict(false, `pod ${podKey(pod)} has no controller to recreate it elsewhere (annotate it ${SAFE_TO_EVICT_ANNOTATION}=true to let it go)`);
        }
        const covering = budgets.filter((b) => b.metadata?.namespace === pod.metadata?.namespace && selectorMatches(b.spec?.selector, pod.metadata?.labels));
        if (covering.length > 1) {
          // The Eviction API refuses such pods (HTTP 500) whatever the budgets say.
          return verdict(false, `pod ${podKey(pod)} is covered by ${covering.length} PodDisruptionBudgets (${covering.map((b) => b.metadata?.name).join(', ')}); the Eviction API refuses to evict it`);
        }
      }

      for (const budget of budgets) {
        const namespace = budget.metadata?.namespace;
        const covered = moving.filter((p) => p.metadata?.namespace === namespace && selectorMatches(budget.spec?.selector, p.metadata?.labels));
        if (covered.length === 0) continue;
        const name = `${namespace}/${budget.metadata?.name}`;
        const observed = budget.status?.observedGeneration;
        if (observed === undefined || observed < (budget.metadata?.generation ?? 0)) {
          return verdict(false, `PodDisruptionBudget ${name} has no current status yet (is the disruption controller running?)`);
        }
        const allowed = budget.status?.disruptionsAllowed ?? 0;
        if (allowed < covered.length) {
          return verdict(false, `PodDisruptionBudget ${name} allows ${allowed} disruption(s) but ${covered.length} of its pods are on node ${input.nodeName}`);
        }
      }

      const room = freeRoom(nodes, pods, input.nodeName);
      const needed = moving.map(podRequests).reduce(add, { cpu: 0, memory: 0 });
      const withBuffer = scale(needed, 1 + input.bufferPercent / 100);
      if (withBuffer.cpu > room.total.cpu || withBuffer.memory > room.total.memory) {
        return verdict(false, `not enough room: the pods need ${formatResources(needed)} plus ${input.bufferPercent}% buffer, the other schedulable nodes have ${formatResources(room.total)} free`);
      }
      for (const pod of moving) {
        const requests = podRequests(pod);
        if (!room.perNode.some((free) => free.cpu >= requests.cpu && free.memory >= requests.memory)) {
          return verdict(false, `not enough room: pod ${podKey(pod)} (${formatResources(requests)}) fits on no other schedulable node`);
        }
      }
      return verdict(true, `${moving.length} pod(s) can move: ${formatResources(needed)} plus ${input.bufferPercent}% buffer fits in ${formatResources(room.total)} free`);
    },

    /**
     * Waits until the moved pods' controllers have all their pods running and ready somewhere else, or the deadline.
     */
    async awaitPodsRescheduled(input: { owners: PodOwner[]; nodeName: string; deadline: string; maxSeconds: number }): Promise<{ settled: boolean; waitingFor: string[] }> {
      const absolute = Date.parse(input.deadline);
      if (Number.isNaN(absolute)) throw nonRetryable(FailureType.invalidInput, `deadline "${input.deadline}" is not an ISO 8601 time`);
      // The workflow's deadline, capped by the wait itself: the same instant in production, and still bounded where
      // the workflow clock runs ahead of this one (time-skipping tests).
      const deadline = Math.min(absolute, Date.now() + input.maxSeconds * 1000);
      const uids = new Set(input.owners.map((o) => o.uid));
      for (;;) {
        const pods = await kubernetesCall('list pods', () => core.listPodForAllNamespaces({})).then((l) => l.items);
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
        await sleep(Math.min(pollMs, Math.max(0, deadline - Date.now())));
      }
    },
  };
}

export type ScaleDownSafetyActivities = ReturnType<typeof createScaleDownSafetyActivities>;

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
