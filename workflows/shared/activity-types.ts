// The activities' contract, owned by the workflows that call them: what each activity takes and answers. The
// factories in activities/ implement it (checked by the compiler there), so workflow code imports nothing from
// activities/ and the dependency between the two folders runs one way only.
import type { DrainSlotRequest, IncreaseCapacityRequest, ReleaseDrainSlotRequest, RetireInstanceRequest, WorkflowAnswer } from '../capacity/api.js';
import type { FallbackReport } from '../monitor/api.js';
import type { WebhookMessage } from '../webhook/api.js';
import type { StepAnnouncement } from './announcements.js';
import type { FlowSettings, GroupPair, TaintSpec } from './settings.js';

// --- what the activities answer ------------------------------------------------------------------------------------

export interface GroupInstance {
  instanceId: string;
  lifecycleState: string;
  healthStatus: string;
}

export interface GroupSnapshot {
  asgName: string;
  desiredCapacity: number;
  minSize: number;
  maxSize: number;
  instances: GroupInstance[];
  capacityRebalance: boolean;
}

export interface CapacityProblem {
  activityId: string;
  statusCode: string;
  message: string;
  startTime: string;
}

/** One poll of a group on behalf of every workflow waiting for a new instance of it. */
export interface GroupProgress {
  desiredCapacity: number;
  /** Every InService instance; the capacity workflow decides which are new and whose. */
  inService: string[];
  /** Every instance still launching (Pending and its lifecycle-hook states). */
  launching: string[];
  /** Capacity problems of scaling activities that started at or after `since` (none read for an instances-only look). */
  capacityProblems: CapacityProblem[];
}

export type TerminationOutcome = 'now' | 'by-an-earlier-attempt' | 'already-leaving';

export interface GroupHealth {
  desiredCapacity: number;
  inService: string[];
  /** Instances on their way in or out (Pending, Terminating, Standby, ...), with their state. */
  notInService: string[];
  /** Ids of the instances still in the group: every one not on its way out (Terminating..., Terminated). */
  members: string[];
  /** Scaling activities not finished yet. */
  activitiesInProgress: string[];
  /** Failed scaling activities that started at or after `since`. */
  failuresSince: string[];
}

/** An instance's Kubernetes node as last seen: its name (none yet) and whether it is Ready. */
export interface NodeLook {
  nodeName?: string;
  ready: boolean;
}

export interface DrainReport {
  evicted: string[];
  /** Pods no drain evicts (DaemonSet, mirror and finished pods), each `namespace/name (why)`. */
  skipped: string[];
  /** Pods this drain was told to leave (see `PodsToLeave`), each `namespace/name (why)`: the drain is not complete. */
  left: string[];
  /** Pods it evicts that are still on the node (a PodDisruptionBudget refused them, or they are still terminating). */
  remaining: string[];
  /** No pod left on the node but those no drain evicts. */
  complete: boolean;
}

/**
 * Pods a drain leaves on the node, each named in its report's `left` with why. `onlyRecreatable`: pods nothing
 * recreates elsewhere (no controller) and pods an operator forbade to move (`safe-to-evict: "false"`, ours or Cluster
 * Autoscaler's). `keepLocalData`: pods with an emptyDir volume, whose data dies with the pod (kubectl drain's "local
 * storage", refused without --delete-emptydir-data). Our `safe-to-evict: "true"` lets a pod go either way.
 */
export interface PodsToLeave {
  onlyRecreatable?: boolean;
  keepLocalData?: boolean;
}

export interface PodOwner {
  namespace: string;
  kind: string;
  name: string;
  uid: string;
}

export interface ScaleDownSafety {
  safe: boolean;
  reason: string;
  /** Pods that would be evicted. */
  pods: string[];
  /** Their controllers, to see them running elsewhere afterwards. */
  owners: PodOwner[];
}

// --- the activities, by concern --------------------------------------------------------------------------------------

export interface SettingsActivities {
  loadSettings(): Promise<FlowSettings>;
}

export interface AutoScalingActivities {
  describeGroup(input: { asgName: string }): Promise<GroupSnapshot>;
  describeGroupProgress(input: { asgName: string; since: string; instancesOnly?: boolean }): Promise<GroupProgress>;
  describeGroupHealth(input: { asgName: string; since?: string }): Promise<GroupHealth>;
  /** `dryRun`: nothing was changed (SPOT_GUARD_DRY_RUN); the workflow keeps it out of its durable records. */
  /** `from`: an increase's starting value, so that a retry does not undo someone else's change made meanwhile. */
  setDesiredCapacity(input: { asgName: string; desiredCapacity: number; from?: number }): Promise<{ requestedAt: string; desiredCapacity: number; dryRun?: true; changedMeanwhile?: true }>;
  /** `already-leaving`: Terminating or gone at the first attempt, so not by this call: no decrement came from it. */
  terminateInstanceInGroup(input: { asgName: string; instanceId: string; decrementDesiredCapacity: boolean }): Promise<{ terminated: TerminationOutcome; dryRun?: true }>;
  verifyInstanceInGroup(input: { instanceId: string; asgName: string }): Promise<{ lifecycleState: string }>;
  /** Whether each of these instances left with a decrement, by its termination's scaling activity since `since`. */
  describeDepartures(input: { asgName: string; instanceIds: string[]; since: string }): Promise<Record<string, DepartureCause>>;
}

/** `with-decrement`: desired came down with it ("shrinking the capacity"); `without-decrement`: the group replaces it. */
export type DepartureCause = 'with-decrement' | 'without-decrement';

export interface KubernetesActivities {
  verifyNode(input: { nodeName: string; instanceId: string }): Promise<{ providerID: string }>;
  /**
   * `fresh`: from a list made now, not the worker's node watch nor a list shared within a second (a node that just
   * registered may be missing from those): for a look that decides whether an instance can go without a drain.
   */
  findNodeForInstance(input: { instanceId: string; fresh?: boolean }): Promise<NodeLook>;
  awaitNodeReady(input: { instanceId: string; deadline: string }): Promise<NodeLook>;
  findUnreadyNodes(input: { instanceIds: string[]; ignoreTaintKeys: string[] }): Promise<{ unready: string[]; ignored: string[] }>;
  taintNode(input: { nodeName: string; taint: TaintSpec }): Promise<{ alreadyTainted: boolean; nodeGone?: boolean }>;
  /** Removes the taint with this key and, unless `uncordon` is false, makes the node schedulable. */
  releaseNode(input: { nodeName: string; taintKey: string; uncordon?: boolean }): Promise<{ nodeGone?: boolean }>;
  cordonNode(input: { nodeName: string }): Promise<{ alreadyCordoned: boolean; nodeGone?: boolean }>;
  evictPods(input: { nodeName: string; deadline: string } & PodsToLeave): Promise<DrainReport>;
}

export interface ScaleDownSafetyActivities {
  assessScaleDownSafety(input: { nodeName: string; bufferPercent: number }): Promise<ScaleDownSafety>;
  awaitPodsRescheduled(input: { owners: PodOwner[]; nodeName: string; deadline: string; maxSeconds: number }): Promise<{ settled: boolean; waitingFor: string[] }>;
}

/** Requests to a group's capacity workflow (each answered by signal) and the delivery of its answers. */
export interface CapacityRequestActivities {
  requestCapacityIncrease(input: IncreaseCapacityRequest & { asgName: string }): Promise<void>;
  requestInstanceRetirement(input: RetireInstanceRequest & { asgName: string }): Promise<void>;
  requestDrainSlot(input: DrainSlotRequest & { asgName: string }): Promise<void>;
  releaseDrainSlot(input: ReleaseDrainSlotRequest & { asgName: string }): Promise<void>;
  sendAnswers(input: { answers: WorkflowAnswer[] }): Promise<{ delivered: number; gone: string[] }>;
}

/** Which protected pair a warned instance's group belongs to (SPOT_GUARD_PAIRS, the shorthand, or the tags). */
export interface ProtectedPairActivities {
  /** Refused for good (non-retryable) when the instance is in no group, or in a group Spot Guard does not protect. */
  verifyProtectedInstance(input: { instanceId: string }): Promise<GroupPair & { lifecycleState: string }>;
}

export interface MonitorRequestActivities {
  reportFallbackToMonitor(input: { spotAsgName: string; onDemandAsgName: string; report: FallbackReport }): Promise<void>;
}

/** A step told to operators: a Kubernetes Event, metrics, a webhook message; never fails (activities/announce.ts). */
export interface AnnounceActivities {
  announceStep(announcement: StepAnnouncement): Promise<void>;
}

/** The webhook's delivery (activities/webhook.ts): one attempt per call, the workflow's retries between them. */
export interface WebhookActivities {
  /** `delivered: false`: given up for good (a refusal retrying cannot change, an hour of failures, the webhook off). */
  postWebhook(message: WebhookMessage): Promise<{ delivered: true } | { delivered: false; reason: string }>;
}

/**
 * The replacement a group launched on its own for a warned instance that left without a decrement: one too many, as
 * desired still counts the +1 made for the warned one (see workflows/capacity/departures.ts).
 */
export interface SurplusActivities {
  /** Terminate with decrement, unless it has a Kubernetes node (looked at afresh in every attempt): then its name. */
  terminateUnlessNode(input: { asgName: string; instanceId: string }): Promise<{ terminated: TerminationOutcome; dryRun?: true } | { nodeName: string }>;
  /** Starts its drain, a rebalance run in surplus mode, unless a run of that instance is open already. */
  startSurplusDrain(input: { instanceId: string; nodeName: string; surplusFor: string; asgName: string }): Promise<{ workflowId: string }>;
}

/** Every activity of Spot Guard: what the worker registers and the workflows proxy. */
export type SpotGuardActivities = SettingsActivities &
  AutoScalingActivities &
  SurplusActivities &
  KubernetesActivities &
  ScaleDownSafetyActivities &
  CapacityRequestActivities &
  MonitorRequestActivities &
  ProtectedPairActivities &
  AnnounceActivities &
  WebhookActivities;
