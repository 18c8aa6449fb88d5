// Auto Scaling activities: thin, idempotent wrappers over the real client. They take absolute targets decided by a
// workflow ("set desired to 7", "terminate i-abc") and never compute relative changes themselves.
import {
  type Activity,
  AutoScalingClient,
  type AutoScalingGroup,
  DescribeAutoScalingGroupsCommand,
  DescribeAutoScalingInstancesCommand,
  DescribeScalingActivitiesCommand,
  SetDesiredCapacityCommand,
  TerminateInstanceInAutoScalingGroupCommand,
} from '@aws-sdk/client-auto-scaling';
import { Context, log } from '@temporalio/activity';
import type {
  AutoScalingActivities,
  CapacityProblem,
  DepartureCause,
  GroupHealth,
  GroupProgress,
  GroupSnapshot,
  TerminationOutcome,
} from '../workflows/shared/activity-types.js';
import { isTerminatingState } from '../workflows/shared/ids.js';
import { awsCall, FailureType, nonRetryable } from './errors.js';
import { describeGroupsPaged } from './protected-pairs.js';
import { sharedRead } from './shared-read.js';
import { requireGroupName, requireInstanceId } from './validation.js';


// Failure texts AWS writes into scaling activities when it cannot launch. Cluster Autoscaler treats any Failed
// activity as "no capacity"; we do too, and also catch these texts on activities that are still being retried.
const CAPACITY_PROBLEM_PATTERNS = [
  /InsufficientInstanceCapacity/,
  /UnfulfillableCapacity/,
  /MaxSpotInstanceCountExceeded/,
  /VcpuLimitExceeded/,
  /InstanceLimitExceeded/,
  /SpotMaxPriceTooLow/,
  /do not have sufficient .*capacity/i,
  /insufficient capacity/i,
];

export function isCapacityProblem(activity: Pick<Activity, 'StatusCode' | 'StatusMessage' | 'Description'>): boolean {
  if (/^Terminating/.test(activity.Description ?? '')) return false; // a failed termination says nothing about launches
  if (activity.StatusCode === 'Failed') return true;
  const text = `${activity.StatusMessage ?? ''} ${activity.Description ?? ''}`;
  return CAPACITY_PROBLEM_PATTERNS.some((pattern) => pattern.test(text));
}

const FINISHED_ACTIVITY = new Set(['Successful', 'Failed', 'Cancelled']);

export interface AutoScalingActivityOptions {
  dryRun?: boolean;
  /** How long one read of a group's members answers verifications (a wave verifies hundreds of instances at once). */
  membershipCacheMs?: number;
  /** How long a poll waits for other groups' polls to share its read (default 400 ms). */
  pollBatchWindowMs?: number;
}

/** One DescribeAutoScalingGroups of a named group; a group that does not exist can never succeed (non-retryable). */
export async function describeAutoScalingGroup(client: AutoScalingClient, asgName: string): Promise<AutoScalingGroup> {
  requireGroupName(asgName);
  const output = await awsCall(`describe Auto Scaling group ${asgName}`, () =>
    client.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [asgName] })),
  );
  const group = output.AutoScalingGroups?.find((g) => g.AutoScalingGroupName === asgName);
  if (!group) throw groupNotFound(asgName);
  return group;
}

const groupNotFound = (asgName: string): Error =>
  nonRetryable(
    FailureType.groupNotFound,
    `Auto Scaling group "${asgName}" does not exist in this account and region; check the pairs (SPOT_GUARD_PAIRS, the spot-guard.io tags, or SPOT_ASG_NAME / ON_DEMAND_ASG_NAME) and AWS_REGION`,
  );

/** How long a group poll waits for the polls of other groups to join its DescribeAutoScalingGroups. */
const POLL_BATCH_WINDOW_MS = 400;

/**
 * Group reads asked within `windowMs` of the first become one DescribeAutoScalingGroups naming them all: the capacity
 * workflows of many groups poll on the same instants (workflows/capacity/replacement-waiters.ts), so a wave over
 * ten groups costs one read per poll, not ten.
 */
function batchedGroupReads(client: AutoScalingClient, windowMs: number): (asgName: string) => Promise<AutoScalingGroup> {
  type Waiting = { resolve: (group: AutoScalingGroup) => void; reject: (error: unknown) => void }[];
  let batch: Map<string, Waiting> | undefined;
  const flush = async (names: Map<string, Waiting>): Promise<void> => {
    try {
      const groups = await describeGroupsPaged(client, { names: [...names.keys()] });
      for (const [name, waiting] of names) {
        const group = groups.find((g) => g.AutoScalingGroupName === name);
        for (const { resolve, reject } of waiting) {
          if (group) resolve(group);
          else reject(groupNotFound(name));
        }
      }
    } catch (error) {
      for (const waiting of names.values()) for (const { reject } of waiting) reject(error);
    }
  };
  return (asgName) => {
    requireGroupName(asgName);
    return new Promise((resolve, reject) => {
      if (!batch) {
        const current = new Map<string, Waiting>();
        batch = current;
        setTimeout(() => {
          batch = undefined;
          void flush(current);
        }, windowMs);
      }
      batch.set(asgName, [...(batch.get(asgName) ?? []), { resolve, reject }]);
    });
  };
}

/** Capacity problems of the group's latest scaling activities that started at or after `since` (ISO 8601). */
export async function capacityProblemsSince(client: AutoScalingClient, asgName: string, since: string): Promise<CapacityProblem[]> {
  const from = Date.parse(since);
  const output = await awsCall(`describe the scaling activities of "${asgName}"`, () =>
    client.send(new DescribeScalingActivitiesCommand({ AutoScalingGroupName: asgName, MaxRecords: 20 })),
  );
  return (output.Activities ?? [])
    .filter((a) => a.StartTime !== undefined && a.StartTime.getTime() >= from && isCapacityProblem(a))
    .map((a) => ({
      activityId: a.ActivityId ?? '',
      statusCode: a.StatusCode ?? '',
      message: a.StatusMessage ?? a.Description ?? '',
      startTime: a.StartTime?.toISOString() ?? '',
    }));
}

/** What every Auto Scaling activity works with: the client, the options, and the group reads they share. */
interface AutoScalingContext {
  client: AutoScalingClient;
  dryRun: boolean;
  readGroup: (asgName: string) => Promise<AutoScalingGroup>;
  /** The poll's read: batched with the other groups' polls of the same instant. */
  pollGroup: (asgName: string) => Promise<AutoScalingGroup>;
  /** The group's members and their lifecycle states, read at most once per cache period however many ask. */
  groupMembers: (asgName: string) => Promise<Map<string, string>>;
}

function autoScalingContext(client: AutoScalingClient, options: AutoScalingActivityOptions): AutoScalingContext {
  const readGroup = (asgName: string): Promise<AutoScalingGroup> => describeAutoScalingGroup(client, asgName);
  const groupMembers = sharedRead(options.membershipCacheMs ?? 2_000, async (asgName) => {
    const group = await readGroup(asgName);
    return new Map((group.Instances ?? []).map((i) => [i.InstanceId ?? '', i.LifecycleState ?? 'Unknown']));
  });
  return { client, dryRun: options.dryRun ?? false, readGroup, pollGroup: batchedGroupReads(client, options.pollBatchWindowMs ?? POLL_BATCH_WINDOW_MS), groupMembers };
}

/**
 * Exactly one DescribeAutoScalingGroups and one DescribeScalingActivities (none with `instancesOnly`), whatever
 * the number of waiters: the capacity workflow calls this once per poll for all of them.
 */
async function describeGroupProgress(
  ctx: AutoScalingContext,
  input: { asgName: string; since: string; instancesOnly?: boolean },
): Promise<GroupProgress> {
  if (Number.isNaN(Date.parse(input.since))) {
    throw nonRetryable(FailureType.invalidInput, `since "${input.since}" is not an ISO 8601 time`);
  }
  const group = await ctx.pollGroup(input.asgName);
  const idsIn = (states: (state: string) => boolean): string[] =>
    (group.Instances ?? []).filter((i) => i.InstanceId && states(i.LifecycleState ?? '')).map((i) => i.InstanceId as string);
  return {
    desiredCapacity: group.DesiredCapacity ?? 0,
    inService: idsIn((state) => state === 'InService'),
    launching: idsIn((state) => state.startsWith('Pending')),
    capacityProblems: input.instancesOnly ? [] : await capacityProblemsSince(ctx.client, input.asgName, input.since),
  };
}

/** One look at a group: sizes and its instances with their lifecycle state. */
async function describeGroup(ctx: AutoScalingContext, input: { asgName: string }): Promise<GroupSnapshot> {
  const group = await ctx.readGroup(input.asgName);
  return {
    asgName: input.asgName,
    desiredCapacity: group.DesiredCapacity ?? 0,
    minSize: group.MinSize ?? 0,
    maxSize: group.MaxSize ?? 0,
    capacityRebalance: group.CapacityRebalance ?? false,
    instances: (group.Instances ?? []).map((i) => ({
      instanceId: i.InstanceId ?? '',
      lifecycleState: i.LifecycleState ?? 'Unknown',
      healthStatus: i.HealthStatus ?? 'Unknown',
    })),
  };
}

/**
 * Sets the desired capacity to an absolute value; applying the same value twice is harmless. With the value it changes
 * `from`, it first reads the group. On the first attempt, a desired capacity no longer at `from` means the caller's look
 * is stale (an operator's terminate with decrement since, a look made before a worker restart): nothing is set, and
 * `changedMeanwhile` tells the caller to look again. On a retry, if someone else changed it (while the call was
 * retried), an increase goes on top of the current value and a decrease is not made, instead of undoing their change.
 * Answers the value the group was left at.
 */
async function setDesiredCapacity(
  ctx: AutoScalingContext,
  input: { asgName: string; desiredCapacity: number; from?: number },
): Promise<{ requestedAt: string; desiredCapacity: number; dryRun?: true; changedMeanwhile?: true }> {
  requireGroupName(input.asgName);
  for (const [name, value] of [['desired capacity', input.desiredCapacity], ['from', input.from ?? 0]] as const) {
    if (!Number.isInteger(value) || value < 0) throw nonRetryable(FailureType.invalidInput, `${name} ${value} for "${input.asgName}" is not a whole number >= 0`);
  }
  // Taken before the call: every scaling activity this request causes starts at or after this instant.
  const requestedAt = new Date().toISOString();
  if (ctx.dryRun) {
    log.info('dry run: would set desired capacity', { asgName: input.asgName, desiredCapacity: input.desiredCapacity });
    return { requestedAt, desiredCapacity: input.desiredCapacity, dryRun: true };
  }
  const { desiredCapacity, set, changedMeanwhile } = await targetOf(ctx, input);
  if (!set) return { requestedAt, desiredCapacity, ...(changedMeanwhile ? { changedMeanwhile } : {}) };
  await awsCall(`set the desired capacity of "${input.asgName}" to ${desiredCapacity}`, () =>
    ctx.client.send(new SetDesiredCapacityCommand({ AutoScalingGroupName: input.asgName, DesiredCapacity: desiredCapacity, HonorCooldown: false })),
  );
  log.info('desired capacity set', { asgName: input.asgName, desiredCapacity });
  return { requestedAt, desiredCapacity };
}

/**
 * What this attempt sets: the target while desired is still `from`; on a first attempt that finds it moved, nothing
 * (the caller's look is stale: `changedMeanwhile`); on a retry, nothing when an earlier attempt set it, and when someone
 * else moved desired meanwhile, an increase on top of the current value (at most MaxSize) and no decrease. A retry errs
 * towards capacity: an earlier attempt that went through followed by an operator's decrement looks like neither, and
 * then an increase is applied again rather than risking a missing replacement, and a decrease is not made again rather
 * than taking a running node.
 */
async function targetOf(ctx: AutoScalingContext, input: { asgName: string; desiredCapacity: number; from?: number }): Promise<{ desiredCapacity: number; set: boolean; changedMeanwhile?: true }> {
  const { asgName, desiredCapacity: target, from } = input;
  if (from === undefined) return { desiredCapacity: target, set: true };
  // Even a first attempt reads: the look it was computed from may be minutes old (a worker restart between the two).
  const group = await ctx.readGroup(asgName);
  const current = group.DesiredCapacity ?? 0;
  if (current === from) return { desiredCapacity: target, set: true };
  if (Context.current().info.attempt === 1) {
    log.info('desired capacity changed since the look this change was computed from: nothing set, the caller looks again', { asgName, from, target, current });
    return { desiredCapacity: current, set: false, changedMeanwhile: true };
  }
  if (current === target) {
    log.info('desired capacity already set by an earlier attempt', { asgName, desiredCapacity: current });
    return { desiredCapacity: current, set: false };
  }
  const increase = target > from;
  // Someone may have raised it meanwhile: never past MaxSize, which AWS would refuse for good.
  const desiredCapacity = increase ? Math.min(current + (target - from), group.MaxSize ?? Number.MAX_SAFE_INTEGER) : current;
  log.warn(`desired capacity was changed by someone else while this change was retried: ${increase ? 'the increase goes on top of it' : 'the decrease is not made'}`, { asgName, from, target, current, desiredCapacity });
  return { desiredCapacity, set: increase };
}

/**
 * Terminates exactly this instance, lowering desired capacity with it by default so the group does not replace it. An
 * instance found Terminating or gone on a retry is this activity's own earlier attempt, whose answer was lost; on the
 * first attempt it is someone else's doing (AWS reclaiming it, an operator), and the caller must not book a decrement.
 */
async function terminateInstanceInGroup(
  ctx: AutoScalingContext,
  input: { asgName: string; instanceId: string; decrementDesiredCapacity: boolean },
): Promise<{ terminated: TerminationOutcome; dryRun?: true }> {
  requireInstanceId(input.instanceId);
  const group = await ctx.readGroup(input.asgName);
  const member = group.Instances?.find((i) => i.InstanceId === input.instanceId);
  if (!member || isTerminatingState(member.LifecycleState)) {
    return { terminated: Context.current().info.attempt > 1 ? 'by-an-earlier-attempt' : 'already-leaving' };
  }
  if (ctx.dryRun) {
    log.info('dry run: would terminate instance', input);
    return { terminated: 'now', dryRun: true };
  }
  await awsCall(`terminate ${input.instanceId} in "${input.asgName}"`, () =>
    ctx.client.send(
      new TerminateInstanceInAutoScalingGroupCommand({
        InstanceId: input.instanceId,
        ShouldDecrementDesiredCapacity: input.decrementDesiredCapacity,
      }),
    ),
  );
  log.info('instance terminated', input);
  return { terminated: 'now' };
}

/** What the revert-to-spot monitor needs to judge a group healthy: sizes, states and recent scaling activities. */
async function describeGroupHealth(ctx: AutoScalingContext, input: { asgName: string; since?: string }): Promise<GroupHealth> {
  const group = await ctx.readGroup(input.asgName);
  const output = await awsCall(`describe the scaling activities of "${input.asgName}"`, () =>
    ctx.client.send(new DescribeScalingActivitiesCommand({ AutoScalingGroupName: input.asgName, MaxRecords: 20 })),
  );
  const since = input.since ? Date.parse(input.since) : Number.NEGATIVE_INFINITY;
  const activities = output.Activities ?? [];
  return {
    desiredCapacity: group.DesiredCapacity ?? 0,
    inService: (group.Instances ?? []).filter((i) => i.LifecycleState === 'InService').map((i) => i.InstanceId ?? ''),
    notInService: (group.Instances ?? [])
      .filter((i) => i.LifecycleState !== 'InService')
      .map((i) => `${i.InstanceId} (${i.LifecycleState})`),
    members: (group.Instances ?? []).filter((i) => !isTerminatingState(i.LifecycleState)).map((i) => i.InstanceId ?? ''),
    activitiesInProgress: activities
      .filter((a) => !FINISHED_ACTIVITY.has(a.StatusCode ?? ''))
      .map((a) => `${a.Description ?? a.ActivityId} (${a.StatusCode})`),
    // By the end time: an activity that started before the last look and failed after it still counts.
    failuresSince: activities
      .filter((a) => a.StatusCode === 'Failed' && ((a.EndTime ?? a.StartTime)?.getTime() ?? 0) >= since)
      .map((a) => a.StatusMessage ?? a.Description ?? a.ActivityId ?? 'failed'),
  };
}

/** Confirms the instance belongs to the named group; anything else can never succeed. */
async function verifyInstanceInGroup(
  ctx: AutoScalingContext,
  input: { instanceId: string; asgName: string },
): Promise<{ lifecycleState: string }> {
  requireInstanceId(input.instanceId);
  requireGroupName(input.asgName);
  // Found among the group's members (one shared read): verified. Anything else asks AWS about this instance, so the
  // refusal can name the group it really belongs to.
  const state = await ctx.groupMembers(input.asgName).then((members) => members.get(input.instanceId)).catch(() => undefined);
  if (state !== undefined) return { lifecycleState: state };
  const output = await awsCall(`describe Auto Scaling instance ${input.instanceId}`, () =>
    ctx.client.send(new DescribeAutoScalingInstancesCommand({ InstanceIds: [input.instanceId] })),
  );
  const found = output.AutoScalingInstances?.find((i) => i.InstanceId === input.instanceId);
  if (!found) {
    throw nonRetryable(
      FailureType.instanceNotInGroup,
      `instance ${input.instanceId} is not in any Auto Scaling group; Spot Guard only acts on instances of "${input.asgName}"`,
    );
  }
  if (found.AutoScalingGroupName !== input.asgName) {
    throw nonRetryable(
      FailureType.instanceNotInGroup,
      `instance ${input.instanceId} belongs to Auto Scaling group "${found.AutoScalingGroupName}", not to the spot group "${input.asgName}"`,
    );
  }
  return { lifecycleState: found.LifecycleState ?? 'Unknown' };
}

/** Scaling activities read for departures: AWS keeps six weeks of them, newest first; a few pages reach any recent look. */
const DEPARTURE_PAGES = 5;

/**
 * How each instance left, from its termination's scaling activity since `since`: AWS words the cause of one that took
 * desired capacity down with it as "..., shrinking the capacity from N to M." (an operator's terminate with decrement,
 * a scale-in), and of one the group will replace without it (a spot reclaim, a health check, a terminate without
 * decrement). Instances without such an activity are left out.
 */
async function describeDepartures(ctx: AutoScalingContext, input: { asgName: string; instanceIds: string[]; since: string }): Promise<Record<string, DepartureCause>> {
  requireGroupName(input.asgName);
  for (const id of input.instanceIds) requireInstanceId(id);
  const from = Date.parse(input.since);
  const causes: Record<string, DepartureCause> = {};
  let NextToken: string | undefined;
  for (let page = 0; page < DEPARTURE_PAGES; page++) {
    const output = await awsCall(`describe the scaling activities of "${input.asgName}"`, () =>
      ctx.client.send(new DescribeScalingActivitiesCommand({ AutoScalingGroupName: input.asgName, MaxRecords: 100, NextToken })),
    );
    for (const activity of output.Activities ?? []) {
      const instanceId = input.instanceIds.find((id) => activity.Description === `Terminating EC2 instance: ${id}`);
      if (instanceId && !causes[instanceId]) causes[instanceId] = /shrinking the capacity/i.test(activity.Cause ?? '') ? 'with-decrement' : 'without-decrement';
    }
    const oldest = output.Activities?.at(-1)?.StartTime;
    NextToken = output.NextToken;
    if (!NextToken || (oldest !== undefined && oldest.getTime() < from) || Object.keys(causes).length === input.instanceIds.length) break;
  }
  return causes;
}

/** The Auto Scaling activities over this client; each is documented on its function above. */
export function createAutoScalingActivities(client: AutoScalingClient, options: AutoScalingActivityOptions = {}): AutoScalingActivities {
  const ctx = autoScalingContext(client, options);
  return {
    describeGroupProgress: (input) => describeGroupProgress(ctx, input),
    describeDepartures: (input) => describeDepartures(ctx, input),
    describeGroup: (input) => describeGroup(ctx, input),
    setDesiredCapacity: (input) => setDesiredCapacity(ctx, input),
    terminateInstanceInGroup: (input) => terminateInstanceInGroup(ctx, input),
    describeGroupHealth: (input) => describeGroupHealth(ctx, input),
    verifyInstanceInGroup: (input) => verifyInstanceInGroup(ctx, input),
  };
}

export type { CapacityProblem, GroupHealth, GroupInstance, GroupProgress, GroupSnapshot } from '../workflows/shared/activity-types.js';
