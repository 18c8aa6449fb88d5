// Settling the books of warned instances that left the group some other way than Spot Guard's own terminate with
// decrement: checked at every full look at the group (and once a minute while books are open and nobody waits), so a
// book outlives the rebalance run that opened it. See books.ts for how a departure is told apart. A replacement the
// group launched on its own is never terminated while its node may carry pods: it is drained first.
import { log } from '@temporalio/workflow';
import type { GroupSnapshot } from '../shared/activity-types.js';
import { rootMessage } from '../shared/failures.js';
import { describeDepartures, setDesiredCapacity, startSurplusDrain, terminateUnlessNode } from './activities.js';
import type { RetiredInstance } from './api.js';
import type { Settlement } from './books.js';
import type { GroupState } from './group-state.js';

/** While books are open and nobody waits for an instance, the group is looked at this often for departures. */
export const BOOKS_LOOK_MS = 60_000;

/** Desired capacity moved under a settlement: the look the others would be settled against is stale. */
class DesiredChangedMeanwhile extends Error {}

/** How far back the scaling activities are read for the causes of departures (the reading stops once all are found). */
const CAUSES_LOOKBACK_MS = 24 * 3600_000;

/** Settles every booked instance that left since the last look; the snapshot is updated with the changes made. */
export async function settleDepartures(state: GroupState, group: GroupSnapshot): Promise<void> {
  for (const settlement of await departuresOf(state, group)) {
    let how: RetiredInstance['how'];
    try {
      how = await settle(state, group, settlement);
    } catch (error) {
      if (error instanceof DesiredChangedMeanwhile) {
        // This look is stale: the books still open wait for the next one rather than be settled against it.
        state.ledger.retired[settlement.instanceId] = { how: unsettled(state, settlement.instanceId, error.message), at: new Date().toISOString(), desiredAfter: group.desiredCapacity };
        state.books.close(settlement.instanceId);
        break;
      }
      // Whether the change took effect is unknown: a second one could take a running node, so the books stop here.
      log.error('could not settle the books of an instance that left the group; desired capacity left alone: check the group', {
        asgName: state.asgName,
        instanceId: settlement.instanceId,
        error: rootMessage(error),
      });
      how = 'left-unsettled';
    }
    state.ledger.retired[settlement.instanceId] = { how, at: new Date().toISOString(), desiredAfter: group.desiredCapacity };
    state.books.close(settlement.instanceId);
  }
  state.books.see(group);
}

/** The books' departures; when the two looks cannot tell them apart, again with each departure's scaling activity. */
async function departuresOf(state: GroupState, group: GroupSnapshot): Promise<Settlement[]> {
  const taken = state.waiters.takenInstances();
  const settlements = state.books.departures(group, taken);
  const askCauses = settlements.flatMap((s) => (s.how === 'unclear' ? (s.askCauses ?? []) : []));
  if (askCauses.length === 0) return settlements;
  try {
    const since = new Date(Date.now() - CAUSES_LOOKBACK_MS).toISOString();
    const causes = await describeDepartures({ asgName: state.asgName, instanceIds: [...new Set(askCauses)], since });
    return state.books.departures(group, taken, causes);
  } catch (error) {
    log.warn('could not read the scaling activities of instances that left the group', { asgName: state.asgName, error: rootMessage(error) });
    return settlements;
  }
}

async function settle(state: GroupState, group: GroupSnapshot, settlement: Settlement): Promise<RetiredInstance['how']> {
  const { asgName } = state;
  const { instanceId } = settlement;
  switch (settlement.how) {
    case 'removed-by-someone-else':
      log.info('a warned instance left the group with a decrement made by someone else: its books need nothing more', { asgName, instanceId });
      return 'removed-by-someone-else';
    case 'lower-desired': {
      if (settlement.desiredAfter < group.minSize) return unsettled(state, instanceId, `lowering desired to ${settlement.desiredAfter} would go below MinSize ${group.minSize}`);
      const lowered = await setDesiredCapacity({ asgName, desiredCapacity: settlement.desiredAfter, from: group.desiredCapacity });
      if (lowered.dryRun) return unsettled(state, instanceId, 'dry run: desired capacity not lowered');
      if (lowered.desiredCapacity !== settlement.desiredAfter) throw new DesiredChangedMeanwhile(`someone else changed desired to ${lowered.desiredCapacity} while it was being lowered`);
      state.appliedChanges++;
      log.info('a warned instance left the group without a decrement: desired lowered before the group replaced it', { asgName, instanceId, desired: settlement.desiredAfter });
      group.desiredCapacity = settlement.desiredAfter;
      return 'reclaimed-by-aws';
    }
    case 'terminate-replacement':
      return settleWithReplacement(state, group, instanceId, settlement.replacementId);
    case 'unclear':
      return unsettled(state, instanceId, settlement.reason);
  }
}

/**
 * The group launched a replacement for an instance it lost while desired still counts the +1 made for that instance:
 * the replacement is one too many. With no Kubernetes node it carries no pod and goes at once, with decrement (the
 * activity looks at the nodes afresh in each attempt, right before the call). With a node it may carry pods by now
 * (evicted ones land on the least loaded node, a new one): the book moves to it, and a rebalance run in surplus mode
 * taints and drains it (PodDisruptionBudgets and the drain budget respected), then terminates it with decrement, which
 * closes the book. Until then desired stays raised by one, for a live instance. Never a node with pods taken blind.
 */
async function settleWithReplacement(state: GroupState, group: GroupSnapshot, instanceId: string, replacementId: string): Promise<RetiredInstance['how']> {
  const { asgName } = state;
  if (group.desiredCapacity - 1 < group.minSize) return unsettled(state, instanceId, `terminating its replacement with decrement would go below MinSize ${group.minSize}`);
  // Warned itself, with its own +1: its run retires it with its own decrement, and a book holds one +1 only.
  if (state.books.open[replacementId]) return unsettled(state, instanceId, `its replacement ${replacementId} is warned itself, with a +1 of its own`);
  const outcome = await terminateUnlessNode({ asgName, instanceId: replacementId });
  if ('nodeName' in outcome) return drainSurplus(state, instanceId, replacementId, outcome.nodeName);
  if (outcome.terminated === 'already-leaving') return unsettled(state, instanceId, `its replacement ${replacementId} was leaving the group itself`);
  if (outcome.dryRun) return unsettled(state, instanceId, `dry run: its replacement ${replacementId} not terminated`);
  state.appliedChanges++;
  log.info('a warned instance left the group without a decrement: the replacement the group launched for it, with no node yet, was terminated with decrement', { asgName, instanceId, replacementId });
  group.desiredCapacity--;
  group.instances = group.instances.filter((i) => i.instanceId !== replacementId);
  return 'reclaimed-by-aws';
}

/** The replacement has a node: its drain is started, then the book moves to it (never left on one nothing drains). */
async function drainSurplus(state: GroupState, instanceId: string, replacementId: string, nodeName: string): Promise<RetiredInstance['how']> {
  await startSurplusDrain({ instanceId: replacementId, nodeName, surplusFor: instanceId, asgName: state.asgName });
  state.books.moveTo(instanceId, replacementId);
  log.info('a warned instance left the group without a decrement, and the replacement the group launched for it has a node: it is drained, then terminated with decrement', {
    asgName: state.asgName,
    instanceId,
    replacementId,
    nodeName,
  });
  return 'reclaimed-by-aws';
}

function unsettled(state: GroupState, instanceId: string, reason: string): 'left-unsettled' {
  log.warn('a warned instance left the group and its books could not be settled safely; desired capacity left alone: check the group', {
    asgName: state.asgName,
    instanceId,
    reason,
  });
  return 'left-unsettled';
}
