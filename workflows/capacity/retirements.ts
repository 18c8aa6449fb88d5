// Retiring an instance keeps the group's books: terminate with decrement (that very instance, never a bare
// "desired - 1", which lets the group pick its own victim), or, when it already left, answer how its books were
// settled (departures.ts). Idempotent per instance, not only per request: the intent is recorded before the
// terminate call and the outcome after it, so a termination whose answer was lost is never taken for a reclaim.
import { ActivityFailure, ApplicationFailure, log } from '@temporalio/workflow';
import type { GroupSnapshot, TerminationOutcome } from '../shared/activity-types.js';
import { isTerminatingState } from '../shared/ids.js';
import { terminateInstanceInGroup } from './activities.js';
import { BELOW_MIN_SIZE, type RetireInstanceRequest } from './api.js';
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

async function applyRetirement(state: GroupState, request: RetireInstanceRequest, snapshot?: GroupSnapshot, seenLeaving = false): Promise<void> {
  if (answeredFromBooks(state, request)) return;
  // A full look settles the books of warned instances that left the group, this one included.
  const group = snapshot ?? (await state.lookAtGroup());
  if (answeredFromBooks(state, request)) return;
  const { ledger } = state;
  const earlier = ledger.retired[request.instanceId];
  const at = new Date().toISOString();
  const member = group.instances.find((i) => i.instanceId === request.instanceId);
  if (member && !isTerminatingState(member.lifecycleState)) {
    // Still running, so no earlier terminate call took effect.
    if (!request.terminate) ledger.record(request.requestId, 'retire', { status: 'still-running' }, at);
    else if (seenLeaving) throw ApplicationFailure.retryable(`${request.instanceId} was leaving the group at the terminate call, yet the group still lists it running`);
    else await terminateWithDecrement(state, request, group);
    return;
  }
  if (earlier) {
    // Our unconfirmed terminate call did take effect: the decrement came with it.
    ledger.retired[request.instanceId] = { ...earlier, how: 'terminated' };
    state.books.close(request.instanceId);
    ledger.record(request.requestId, 'retire', { status: 'terminated', desiredAfter: earlier.desiredAfter }, at);
    return;
  }
  settleUnbookedAbsence(state, request, group);
}

/** The books were settled for this instance already (perhaps by a request whose answer was lost): never twice. */
function answeredFromBooks(state: GroupState, request: RetireInstanceRequest): boolean {
  const earlier = state.ledger.retired[request.instanceId];
  if (!earlier || earlier.how === 'terminating') return false;
  state.ledger.record(request.requestId, 'retire', { status: earlier.how, desiredAfter: earlier.desiredAfter }, new Date().toISOString());
  return true;
}

/** Terminate with decrement: this instance goes, and desired comes down with it (unless the group was never raised). */
async function terminateWithDecrement(state: GroupState, request: RetireInstanceRequest, group: GroupSnapshot): Promise<void> {
  const { asgName, ledger } = state;
  const { instanceId } = request;
  // An open book says desired was raised for this instance (perhaps moved to it from a warned one that left), whatever
  // the run that asks knows: it comes down with it.
  const decrement = (request.decrement ?? true) || state.books.open[instanceId] !== undefined;
  const desiredAfter = decrement ? group.desiredCapacity - 1 : group.desiredCapacity;
  if (desiredAfter < group.minSize) {
    throw ApplicationFailure.nonRetryable(`terminating ${instanceId} with decrement would take "${asgName}" below its MinSize (${group.minSize})`, BELOW_MIN_SIZE);
  }
  // Recorded before the call: if the call takes effect but its answer is lost for good, a later request about this
  // instance finds it gone and must not take that for an AWS reclaim and decrement again.
  ledger.retired[instanceId] = { how: 'terminating', at: new Date().toISOString(), desiredAfter };
  let outcome: TerminationOutcome;
  let dryRun: true | undefined;
  try {
    ({ terminated: outcome, dryRun } = await terminateInstanceInGroup({ asgName, instanceId, decrementDesiredCapacity: decrement }));
  } catch (error) {
    // AWS answered no (a 4xx): nothing happened, so nothing is pending. Any other failure leaves it unknown.
    if (isAwsRefusal(error)) delete ledger.retired[instanceId];
    throw error;
  }
  if (outcome === 'already-leaving') {
    // Someone else took it between the look and the call (AWS reclaiming it): no decrement of ours; settle it as gone.
    delete ledger.retired[instanceId];
    return applyRetirement(state, request, undefined, true);
  }
  const at = new Date().toISOString();
  if (dryRun) {
    // Nothing happened: answered, but kept out of the records, the books and the view.
    delete ledger.retired[instanceId];
    ledger.pretend(request.requestId, 'retire', { status: 'terminated', desiredAfter }, at);
    return;
  }
  ledger.retired[instanceId] = { how: 'terminated', at, desiredAfter };
  state.books.close(instanceId);
  state.books.ownTermination(instanceId, decrement);
  state.appliedChanges++;
  ledger.record(request.requestId, 'retire', { status: 'terminated', desiredAfter }, at);
}

/**
 * Gone from the group with no open book (a booked instance was settled by the look): an on-demand node removed another
 * way, or a group that was never raised for it. Never a bare desired - 1: that would let the group pick its victim.
 */
function settleUnbookedAbsence(state: GroupState, request: RetireInstanceRequest, group: GroupSnapshot): void {
  const { ledger } = state;
  const at = new Date().toISOString();
  if (request.ifAbsent === 'leave') {
    ledger.record(request.requestId, 'retire', { status: 'not-in-group' }, at);
    return;
  }
  // Not raised for it: the group replaces it and keeps its size. Raised without a book: desired was raised while the
  // instance was already gone, and which instance stands for it cannot be told: left alone, with a warning.
  const how = request.decrement === false ? 'reclaimed-by-aws' : 'left-unsettled';
  if (how === 'left-unsettled') log.warn('an instance left the group with no open books to settle; desired capacity left alone: check the group', { asgName: state.asgName, instanceId: request.instanceId });
  ledger.retired[request.instanceId] = { how, at, desiredAfter: group.desiredCapacity };
  ledger.record(request.requestId, 'retire', { status: how, desiredAfter: group.desiredCapacity }, at);
}

/** An activity failure that is AWS's definite refusal of the request (so it did not take effect). */
function isAwsRefusal(error: unknown): boolean {
  const cause = error instanceof ActivityFailure ? error.cause : undefined;
  return cause instanceof ApplicationFailure && cause.type === 'AwsRequestRejected';
}
