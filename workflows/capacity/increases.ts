// Spot +1, coalesced: every increase request waiting in the queue becomes one look at the group and one
// SetDesiredCapacity with the sum, granted in arrival order while MaxSize allows. Nothing is read-modify-written
// concurrently, so no increment is lost, and the target is absolute, so a retried activity never adds twice.
import { log } from '@temporalio/workflow';
import { setDesiredCapacity } from './activities.js';
import type { GroupSnapshot } from '../shared/activity-types.js';
import type { IncreaseCapacityRequest } from './api.js';
import { liveInstances } from './books.js';
import type { GroupState } from './group-state.js';

/** Looks at the group again this often when its desired capacity moved between a look and the change computed from it. */
const LOOKS_PER_BATCH = 3;

export async function applyIncreases(state: GroupState, batch: IncreaseCapacityRequest[]): Promise<void> {
  for (let look = 1; ; look++) {
    // Requests answered at an earlier look (their warned instance gone, a surplus) are not looked at again.
    if (await raiseForBatch(state, batch.filter((r) => !state.ledger.completed[r.requestId]))) return;
    if (look === LOOKS_PER_BATCH) {
      throw new Error(`its desired capacity moved between each of ${LOOKS_PER_BATCH} looks and the +1 computed from it: nothing raised, the requests fail and their workflows fall back`);
    }
    log.info('desired capacity moved between the look and the +1 (someone else changed it, or the look was old): looking again', { asgName: state.asgName, look });
  }
}

/** One look and one SetDesiredCapacity for the batch; false: desired moved since the look, nothing was raised. */
async function raiseForBatch(state: GroupState, batch: IncreaseCapacityRequest[]): Promise<boolean> {
  const group = await state.lookAtGroup();
  const wanted = answerSurplusInstances(state, group, answerWarnedInstancesGone(state, group, batch));
  const room = Math.max(0, group.maxSize - group.desiredCapacity);
  const granted = wanted.slice(0, room);
  if (granted.length > 0) {
    const desiredTarget = group.desiredCapacity + granted.length;
    const { requestedAt, dryRun, changedMeanwhile, desiredCapacity: left } = await setDesiredCapacity({ asgName: state.asgName, desiredCapacity: desiredTarget, from: group.desiredCapacity });
    if (changedMeanwhile) return false;
    if (!dryRun) {
      state.appliedChanges++;
      // What the group was left at (a retry may have gone on top of someone else's change): the next look measures from it.
      state.books.ownDesired(left);
    }
    const instancesBefore = liveInstances(group);
    const at = new Date().toISOString();
    for (const request of granted) {
      // Raised for a warned member of this group: held on purpose until it leaves.
      if (!dryRun && request.forInstanceId) state.books.raisedFor(request.forInstanceId, request.requestId, at);
      state.waiters.add(request, requestedAt, instancesBefore, Date.now(), dryRun === true);
      const result = { status: 'granted' as const, desiredBefore: group.desiredCapacity, desiredTarget, appliedAt: requestedAt };
      if (dryRun) state.ledger.pretend(request.requestId, 'increase', result, at);
      else state.ledger.record(request.requestId, 'increase', result, at);
    }
    log.info('desired capacity raised', { asgName: state.asgName, from: group.desiredCapacity, to: desiredTarget, requests: granted.length });
  }
  for (const request of wanted.slice(granted.length)) {
    const result = { status: 'at-max-size' as const, desired: group.desiredCapacity, maxSize: group.maxSize };
    state.ledger.record(request.requestId, 'increase', result, new Date().toISOString());
  }
  return true;
}

/**
 * An increase for a warned instance that has already left the group (AWS took it between the notice and this look, or
 * an operator removed it) is not applied: booked, it could not be settled once the group had relaunched. Returns the rest.
 */
function answerWarnedInstancesGone(state: GroupState, group: GroupSnapshot, batch: IncreaseCapacityRequest[]): IncreaseCapacityRequest[] {
  const live = new Set(liveInstances(group));
  const gone = (request: IncreaseCapacityRequest): boolean => request.forInstanceId !== undefined && !live.has(request.forInstanceId);
  for (const request of batch.filter(gone)) {
    log.info('no +1: the warned instance left the group before it', { asgName: state.asgName, instanceId: request.forInstanceId });
    state.ledger.record(request.requestId, 'increase', { status: 'warned-instance-gone', desired: group.desiredCapacity }, new Date().toISOString());
  }
  return batch.filter((request) => !gone(request));
}

/**
 * An increase for an instance whose book was moved to it (a surplus, drained for another warned instance's +1) is not
 * applied: desired is raised for it already, and a book holds one +1 only. Returns the rest.
 */
function answerSurplusInstances(state: GroupState, group: GroupSnapshot, batch: IncreaseCapacityRequest[]): IncreaseCapacityRequest[] {
  const surplus = (request: IncreaseCapacityRequest): boolean => request.forInstanceId !== undefined && state.books.open[request.forInstanceId]?.carriedFor !== undefined;
  for (const request of batch.filter(surplus)) {
    log.info('no +1: the warned instance is a surplus already, desired raised for it', { asgName: state.asgName, instanceId: request.forInstanceId });
    state.ledger.record(request.requestId, 'increase', { status: 'surplus', desired: group.desiredCapacity }, new Date().toISOString());
  }
  return batch.filter((request) => !surplus(request));
}
