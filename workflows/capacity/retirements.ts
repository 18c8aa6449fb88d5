// Retiring an instance keeps the group's books: terminate with decrement (that very instance, never a bare
// "desired - 1", which lets the group pick its own victim), or, when AWS already took it, lower desired by the one
// instance Spot Guard added for it. Idempotent per instance, not only per request: the intent is recorded before the
// terminate call and the outcome after it, so a termination whose answer was lost is never taken for a reclaim.
import { ActivityFailure, ApplicationFailure } from '@temporalio/workflow';
import type { GroupSnapshot } from '../shared/activity-types.js';
import { isTerminatingState } from '../shared/ids.js';
import { setDesiredCapacity, terminateInstanceInGroup } from './activities.js';
import type { RetireInstanceRequest } from './api.js';
import type { GroupState } from './group-state.js';
import type { Pending } from './request-ledger.js';

/**
 * A retirement is applied alone, except looks that change nothing unless AWS took the instance ("is it still
 * running?"): those waiting together share one read of the group, as a wave sends hundreds of them at once.
 */
export async function applyRetirements(state: GroupState, batch: Pending[]): Promise<void> {
  const first = batch[0]?.request as RetireInstanceRequest;
  state.ledger.addWaitingLooks(batch);
  if (batch.length === 1) return applyRetirement(state, first);
  const group = await state.lookAtGroup();
  for (const pending of batch) await applyRetirement(state, pending.request as RetireInstanceRequest, group);
}

async function applyRetirement(state: GroupState, request: RetireInstanceRequest, snapshot?: GroupSnapshot): Promise<void> {
  const { ledger } = state;
  const earlier = ledger.retired[request.instanceId];
  const at = new Date().toISOString();
  if (earlier && earlier.how !== 'terminating') {
    // The books were settled for this instance already (perhaps by a request whose answer was lost): never twice.
    ledger.record(request.requestId, 'retire', { status: earlier.how, desiredAfter: earlier.desiredAfter }, at);
    return;
  }
  const group = snapshot ?? (await state.lookAtGroup());
  const member = group.instances.find((i) => i.instanceId === request.instanceId);
  if (member && !isTerminatingState(member.lifecycleState)) {
    // Still running, so no earlier terminate call took effect.
    if (!request.terminate) ledger.record(request.requestId, 'retire', { status: 'still-running' }, at);
    else await terminateWithDecrement(state, request, group);
    return;
  }
  if (earlier) {
    // Our unconfirmed terminate call did take effect: the decrement came with it.
    ledger.retired[request.instanceId] = { ...earlier, how: 'terminated' };
    ledger.record(request.requestId, 'retire', { status: 'terminated', desiredAfter: earlier.desiredAfter }, at);
    return;
  }
  await settleAbsentInstance(state, request, group);
}

/** Terminate with decrement: this instance goes, and desired comes down with it (unless the group was never raised). */
async function terminateWithDecrement(state: GroupState, request: RetireInstanceRequest, group: GroupSnapshot): Promise<void> {
  const { asgName, ledger } = state;
  const { instanceId } = request;
  const decrement = request.decrement ?? true;
  const desiredAfter = decrement ? group.desiredCapacity - 1 : group.desiredCapacity;
  if (desiredAfter < group.minSize) {
    throw ApplicationFailure.nonRetryable(`terminating ${instanceId} with decrement would take "${asgName}" below its MinSize (${group.minSize})`, 'BelowMinSize');
  }
  // Recorded before the call: if the call takes effect but its answer is lost for good, a later request about this
  // instance finds it gone and must not take that for an AWS reclaim and decrement again.
  ledger.retired[instanceId] = { how: 'terminating', at: new Date().toISOString(), desiredAfter };
  try {
    // "Already terminating" on a retried attempt is our own first attempt, answer lost: it counts as ours.
    await terminateInstanceInGroup({ asgName, instanceId, decrementDesiredCapacity: decrement });
  } catch (error) {
    // AWS answered no (a 4xx): nothing happened, so nothing is pending. Any other failure leaves it unknown.
    if (isAwsRefusal(error)) delete ledger.retired[instanceId];
    throw error;
  }
  const at = new Date().toISOString();
  ledger.retired[instanceId] = { how: 'terminated', at, desiredAfter };
  state.appliedChanges++;
  ledger.record(request.requestId, 'retire', { status: 'terminated', desiredAfter }, at);
}

/** The instance is gone from the group: AWS took it (settle the books) or, for the monitor, it went another way. */
async function settleAbsentInstance(state: GroupState, request: RetireInstanceRequest, group: GroupSnapshot): Promise<void> {
  const { ledger } = state;
  const at = new Date().toISOString();
  if (request.ifAbsent === 'leave') {
    // Not ours to settle (an on-demand node removed another way): never a bare desired - 1.
    ledger.record(request.requestId, 'retire', { status: 'not-in-group' }, at);
    return;
  }
  // AWS took the instance (spot interruption) and the group would replace it at the raised size: bring desired back
  // down by the one instance Spot Guard added for it.
  const desiredAfter = request.decrement === false ? group.desiredCapacity : Math.max(group.minSize, group.desiredCapacity - 1);
  ledger.retired[request.instanceId] = { how: 'reclaimed-by-aws', at, desiredAfter };
  if (desiredAfter !== group.desiredCapacity) {
    await setDesiredCapacity({ asgName: state.asgName, desiredCapacity: desiredAfter });
    state.appliedChanges++;
    group.desiredCapacity = desiredAfter; // the next look of a batch starts from here
  }
  ledger.record(request.requestId, 'retire', { status: 'reclaimed-by-aws', desiredAfter }, at);
}

/** An activity failure that is AWS's definite refusal of the request (so it did not take effect). */
function isAwsRefusal(error: unknown): boolean {
  const cause = error instanceof ActivityFailure ? error.cause : undefined;
  return cause instanceof ApplicationFailure && cause.type === 'AwsRequestRejected';
}
