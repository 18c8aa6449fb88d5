// The capacity workflow: one long-lived entity per Auto Scaling group through which every desired-capacity change of
// that group goes. Requests arrive as Updates and are applied one batch at a time by a single loop, so two nodes warned
// at the same moment yield +2 (never a lost read-modify-write), and each change is an absolute target recorded in
// history, so a retried activity re-applies the same number instead of adding again.
import {
  ActivityFailure,
  ApplicationFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  log,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { AutoScalingActivities, GroupSnapshot } from '../activities/auto-scaling.js';
import {
  type CapacityRecord,
  capacityStatusQuery,
  type CapacityWorkflowInput,
  type IncreaseCapacityRequest,
  type IncreaseCapacityResult,
  increaseCapacityUpdate,
  isTerminatingState,
  type RetireInstanceRequest,
  type RetireInstanceResult,
  type RetiredInstance,
  retireInstanceUpdate,
  searchAttributes,
} from './definitions.js';
import { rootMessage } from './failures.js';

const { describeGroup, setDesiredCapacity, terminateInstanceInGroup } = proxyActivities<AutoScalingActivities>({
  startToCloseTimeout: '30 seconds',
  // Throttling and AWS-side errors back off and retry; after 10 minutes the request fails and its caller decides.
  scheduleToCloseTimeout: '10 minutes',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

/** Completed requests remembered for deduplication, carried across continue-as-new. */
const MAX_REMEMBERED_REQUESTS = 500;
/** Size bound of each carried record set (JSON characters). */
const MAX_CARRIED_BYTES = 256 * 1024;
/** Continue-as-new well before Temporal's limits even if the server has not suggested it yet. */
const DEFAULT_HISTORY_BOUND = 10_000;

type Pending =
  | { kind: 'increase'; request: IncreaseCapacityRequest }
  | { kind: 'retire'; request: RetireInstanceRequest };


export async function capacityWorkflow(input: CapacityWorkflowInput & { historyBound?: number }): Promise<never> {
  const { asgName } = input;
  const historyBound = input.historyBound ?? DEFAULT_HISTORY_BOUND;
  const completed: Record<string, CapacityRecord> = { ...(input.carried?.completed ?? {}) };
  const retired: Record<string, RetiredInstance> = { ...(input.carried?.retired ?? {}) };
  const failed: Record<string, string> = {};
  const queue: Pending[] = [];
  let appliedChanges = input.carried?.appliedChanges ?? 0;
  let lastGroup: GroupSnapshot | undefined;
  let warnedAboutCapacityRebalance = false;

  if (workflowInfo().typedSearchAttributes.get(searchAttributes.asg) !== asgName) {
    upsertSearchAttributes([{ key: searchAttributes.asg, value: asgName }]);
  }

  setHandler(capacityStatusQuery, () => ({
    asgName,
    pendingRequests: queue.map((p) => p.request.requestId),
    lastDesired: lastGroup?.desiredCapacity,
    lastMaxSize: lastGroup?.maxSize,
    appliedChanges,
    recent: Object.values(completed).slice(-20),
  }));

  async function enqueueAndWait<R>(pending: Pending): Promise<R> {
    const id = pending.request.requestId;
    if (!completed[id] && !queue.some((p) => p.request.requestId === id)) {
      delete failed[id]; // a request that failed before is tried again, not answered with the old failure
      queue.push(pending);
    }
    await condition(() => completed[id] !== undefined || failed[id] !== undefined);
    const record = completed[id];
    if (!record) throw ApplicationFailure.nonRetryable(failed[id] ?? 'request failed', 'CapacityRequestFailed');
    return record.result as R;
  }

  setHandler(
    increaseCapacityUpdate,
    (request) => enqueueAndWait<IncreaseCapacityResult>({ kind: 'increase', request }),
    { validator: (request) => requireRequestId(request, completed, 'increase') },
  );
  setHandler(
    retireInstanceUpdate,
    (request) => enqueueAndWait<RetireInstanceResult>({ kind: 'retire', request }),
    {
      validator: (request) => {
        requireRequestId(request, completed, 'retire');
        if (typeof request.instanceId !== 'string' || !/^i-[0-9a-f]+$/.test(request.instanceId)) {
          throw new Error(`instanceId "${request.instanceId}" is not an EC2 instance id`);
        }
        if (typeof request.terminate !== 'boolean') throw new Error('terminate must be true or false');
      },
    },
  );

  function record(requestId: string, kind: CapacityRecord['kind'], result: CapacityRecord['result']): void {
    completed[requestId] = { requestId, kind, at: new Date().toISOString(), result };
  }

  async function lookAtGroup(): Promise<GroupSnapshot> {
    const group = await describeGroup({ asgName });
    lastGroup = group;
    if (group.capacityRebalance && !warnedAboutCapacityRebalance) {
      warnedAboutCapacityRebalance = true;
      log.warn('Capacity Rebalancing is enabled on this group: AWS launches its own replacement as well as Spot Guard', {
        asgName,
      });
    }
    return group;
  }

  /** All increases waiting now become one SetDesiredCapacity, each granted in arrival order while MaxSize allows. */
  async function applyIncreases(batch: IncreaseCapacityRequest[]): Promise<void> {
    const group = await lookAtGroup();
    const room = Math.max(0, group.maxSize - group.desiredCapacity);
    const granted = batch.slice(0, room);
    if (granted.length > 0) {
      const desiredTarget = group.desiredCapacity + granted.length;
      const { requestedAt } = await setDesiredCapacity({ asgName, desiredCapacity: desiredTarget });
      appliedChanges++;
      const instancesBefore = group.instances.filter((i) => !isTerminatingState(i.lifecycleState)).map((i) => i.instanceId);
      for (const request of granted) {
        record(request.requestId, 'increase', {
          status: 'granted',
          desiredBefore: group.desiredCapacity,
          desiredTarget,
          instancesBefore,
          appliedAt: requestedAt,
        });
      }
      log.info('desired capacity raised', { asgName, from: group.desiredCapacity, to: desiredTarget, requests: granted.length });
    }
    for (const request of batch.slice(granted.length)) {
      record(request.requestId, 'increase', { status: 'at-max-size', desired: group.desiredCapacity, maxSize: group.maxSize });
    }
  }

  async function applyRetire(request: RetireInstanceRequest): Promise<void> {
    const { instanceId } = request;
    const earlier = retired[instanceId];
    if (earlier && earlier.how !== 'terminating') {
      // The books were settled for this instance already (perhaps by a request whose answer was lost): never twice.
      record(request.requestId, 'retire', { status: earlier.how, desiredAfter: earlier.desiredAfter });
      return;
    }
    const group = await lookAtGroup();
    const member = group.instances.find((i) => i.instanceId === instanceId);
    if (member && !isTerminatingState(member.lifecycleState)) {
      // Still running, so no earlier terminate call took effect: (re)try it.
      if (!request.terminate) {
        record(request.requestId, 'retire', { status: 'still-running' });
        return;
      }
      const decrement = request.decrement ?? true;
      const desiredAfter = decrement ? group.desiredCapacity - 1 : group.desiredCapacity;
      if (desiredAfter < group.minSize) {
        throw ApplicationFailure.nonRetryable(
          `terminating ${instanceId} with decrement would take "${asgName}" below its MinSize (${group.minSize})`,
          'BelowMinSize',
        );
      }
      // Recorded before the call: if the call takes effect but its answer is lost for good, a later request about
      // this instance finds it gone and must not take that for an AWS reclaim and decrement again.
      retired[instanceId] = { how: 'terminating', at: new Date().toISOString(), desiredAfter };
      try {
        // "Already terminating" on a retried attempt is our own first attempt, answer lost: it counts as ours.
        await terminateInstanceInGroup({ asgName, instanceId, decrementDesiredCapacity: decrement });
      } catch (error) {
        // AWS answered no (a 4xx): nothing happened, so nothing is pending. Any other failure leaves it unknown.
        if (isAwsRefusal(error)) delete retired[instanceId];
        throw error;
      }
      retired[instanceId] = { how: 'terminated', at: new Date().toISOString(), desiredAfter };
      appliedChanges++;
      record(request.requestId, 'retire', { status: 'terminated', desiredAfter });
      return;
    }
    if (earlier) {
      // Our unconfirmed terminate call did take effect: the decrement came with it.
      retired[instanceId] = { ...earlier, how: 'terminated' };
      record(request.requestId, 'retire', { status: 'terminated', desiredAfter: earlier.desiredAfter });
      return;
    }
    return settleAbsent(request, group);
  }

  async function settleAbsent(request: RetireInstanceRequest, group: GroupSnapshot): Promise<void> {
    const { instanceId } = request;
    if (request.ifAbsent === 'leave') {
      // Not ours to settle (an on-demand node removed another way): never a bare desired - 1.
      record(request.requestId, 'retire', { status: 'not-in-group' });
      return;
    }
    // AWS took the instance (spot interruption) and the group would replace it at the raised size: bring desired back
    // down by the one instance Spot Guard added for it.
    const desiredAfter = request.decrement === false ? group.desiredCapacity : Math.max(group.minSize, group.desiredCapacity - 1);
    retired[instanceId] = { how: 'reclaimed-by-aws', at: new Date().toISOString(), desiredAfter };
    if (desiredAfter !== group.desiredCapacity) {
      await setDesiredCapacity({ asgName, desiredCapacity: desiredAfter });
      appliedChanges++;
    }
    record(request.requestId, 'retire', { status: 'reclaimed-by-aws', desiredAfter });
  }

  const shouldContinueAsNew = (): boolean =>
    workflowInfo().continueAsNewSuggested || workflowInfo().historyLength >= historyBound;

  for (;;) {
    await condition(() => queue.length > 0 || shouldContinueAsNew());
    if (queue.length === 0) {
      // Let every Update handler return its answer first; a request arriving meanwhile is served by this run.
      await condition(() => allHandlersFinished() || queue.length > 0);
      if (queue.length > 0) continue;
      return continueAsNew<typeof capacityWorkflow>({
        asgName,
        historyBound: input.historyBound,
        carried: { completed: mostRecent(completed), retired: mostRecent(retired), appliedChanges },
      });
    }
    const batch = takeBatch(queue);
    try {
      if (batch[0]?.kind === 'retire') await applyRetire(batch[0].request);
      else await applyIncreases(batch.map((p) => p.request as IncreaseCapacityRequest));
    } catch (error) {
      const message = `Auto Scaling group "${asgName}": ${rootMessage(error)}`;
      log.error('capacity change failed', { asgName, error: message });
      for (const pending of batch) failed[pending.request.requestId] = message;
    }
  }
}

/** An activity failure that is AWS's definite refusal of the request (so it did not take effect). */
function isAwsRefusal(error: unknown): boolean {
  const cause = error instanceof ActivityFailure ? error.cause : undefined;
  return cause instanceof ApplicationFailure && cause.type === 'AwsRequestRejected';
}

/**
 * The newest entries of a record (insertion order), bounded in count and in size: the input of continue-as-new must
 * stay far below Temporal's payload limit even for groups of hundreds of instances.
 */
function mostRecent<T>(entries: Record<string, T>): Record<string, T> {
  const kept: [string, T][] = [];
  let size = 0;
  for (const [key, value] of Object.entries(entries).slice(-MAX_REMEMBERED_REQUESTS).reverse()) {
    size += key.length + JSON.stringify(value).length;
    if (size > MAX_CARRIED_BYTES) break;
    kept.push([key, value]);
  }
  return Object.fromEntries(kept.reverse());
}

/** Every increase at the head of the queue goes in one batch; a retirement is applied alone, in its turn. */
function takeBatch(queue: Pending[]): Pending[] {
  if (queue[0]?.kind === 'retire') return queue.splice(0, 1);
  const end = queue.findIndex((p) => p.kind !== 'increase');
  return queue.splice(0, end === -1 ? queue.length : end);
}

function requireRequestId(
  request: { requestId?: unknown } | undefined,
  completed: Record<string, CapacityRecord>,
  kind: CapacityRecord['kind'],
): void {
  if (typeof request?.requestId !== 'string' || request.requestId.length === 0 || request.requestId.length > 400) {
    throw new Error(`requestId "${String(request?.requestId)}" must be a non-empty string of at most 400 characters`);
  }
  const earlier = completed[request.requestId];
  if (earlier && earlier.kind !== kind) {
    throw new Error(`requestId "${request.requestId}" was already used for a ${earlier.kind} request`);
  }
}
