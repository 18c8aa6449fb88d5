// Settings the worker hands to workflows through the loadSettings activity, so every run records in its history the
// values it acted on and a replay never depends on the environment of the replaying worker.

export interface TaintSpec {
  key: string;
  value: string;
  effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
}

/** A protected spot group and the on-demand group it falls back to. */
export interface GroupPair {
  spotAsgName: string;
  onDemandAsgName: string;
}

/** What a rebalance run acts on: the worker's settings and the pair of the warned instance's group (found by verify). */
export type RunSettings = FlowSettings & GroupPair;

/** The same for every pair: which groups are protected is found per instance (SPOT_GUARD_PAIRS, tags, or the shorthand). */
export interface FlowSettings {
  /** ENABLE_SPOT_GUARD: false leaves only the taint and drain (the plain Node Termination Handler behaviour). */
  addReplacementCapacity: boolean;
  /** Interval between two looks at a group while waiting for a new instance. */
  asgPollIntervalSeconds: number;
  /** How long to wait for a new spot instance before falling back to on-demand. */
  capacityCheckTimeoutSeconds: number;
  /** How long to wait for the on-demand fallback instance. */
  scaleTimeoutSeconds: number;
  /** How long to wait for the replacement's Kubernetes node to be Ready once its instance is InService. */
  nodeReadyTimeoutSeconds: number;
  taint: TaintSpec;
  /** Upper bound of one drain; PDB refusals are retried until then. */
  drainTimeoutSeconds: number;
  /** Terminate the drained instance (with ShouldDecrementDesiredCapacity) instead of waiting for AWS to take it. */
  terminateDrainedInstance: boolean;
  /**
   * SPOT_GUARD_EVICT_UNRECREATABLE_PODS: when the rebalance drain evicts the pods an eviction would lose (no
   * controller, emptyDir data, an operator's safe-to-evict "false"). Absent in settings recorded before it existed:
   * read as `on-interruption`.
   */
  evictUnrecreatablePods: UnrecreatablePodEviction;
  /** While the at-risk instance is kept (no capacity, or termination disabled), how often to look whether it is gone. */
  reclaimPollSeconds: number;
  /** How long to keep watching a kept instance before the workflow ends and leaves it to the operator. */
  reclaimWaitSeconds: number;
  /** Capacity requests arriving within this window of the first become one SetDesiredCapacity call. */
  coalesceWindowSeconds: number;
  /** At most this many of the spot group's nodes drain at once (interruption notices and drainNow are never held). */
  drainBudget: DrainBudget;
  monitor: MonitorSettings;
}

/**
 * `on-interruption`: on a rebalance recommendation the drain leaves those pods (the instance is kept, not terminated,
 * until they go), and evicts them on an interruption notice or an operator's drainNow; `always`: every drain evicts them.
 */
export type UnrecreatablePodEviction = 'on-interruption' | 'always';

/** A disruption budget: a fixed number of nodes, or a percentage of the group's desired capacity (rounded up, >= 1). */
export type DrainBudget = { nodes: number } | { percent: number };

/** How many nodes the budget allows draining at once in a group of this size. */
export function drainBudgetLimit(budget: DrainBudget, groupSize: number): number {
  if ('nodes' in budget) return Math.max(1, budget.nodes);
  return Math.max(1, Math.ceil((budget.percent / 100) * groupSize));
}

export function describeDrainBudget(budget: DrainBudget): string {
  return 'nodes' in budget ? `${budget.nodes} node(s)` : `${budget.percent}%`;
}

/** Settings of the revert-to-spot monitor. */
export interface MonitorSettings {
  /** How often the monitor looks at the spot group. */
  checkIntervalSeconds: number;
  /** How long spot must stay healthy without a break before an on-demand node is removed. */
  stabilityWindowSeconds: number;
  /** Fallback events with nothing left to do are forgotten this long after they closed. */
  cleanupAfterSeconds: number;
  /** Taint put on an on-demand node about to be removed (distinct from the rebalance taint). */
  scaleDownTaint: TaintSpec;
  /** Room the rest of the cluster must have beyond the moved pods' requests, in percent of those requests. */
  capacityBufferPercent: number;
  /** Also remove on-demand instances Spot Guard did not launch (oldest first) once no fallback event is left. */
  removeUnlaunchedOnDemand: boolean;
  /** How long to wait for evicted pods to run elsewhere; past it the scale-down is given up and the node released. */
  podRescheduleTimeoutSeconds: number;
}

/** Parses a duration in seconds: "120", "120s", "2m", "1h". (Shared by the worker's and the signaler's settings.) */
export function parseDurationSeconds(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$/.exec(text);
  if (!match) return undefined;
  const factor = { s: 1, m: 60, h: 3600 }[(match[2] ?? 's') as 's' | 'm' | 'h'];
  return Number(match[1]) * factor;
}
