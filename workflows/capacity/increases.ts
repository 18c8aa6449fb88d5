// Spot +1, coalesced: every increase request waiting in the queue becomes one look at the group and one
// SetDesiredCapacity with the sum, granted in arrival order while MaxSize allows. Nothing is read-modify-written
// concurrently, so no increment is lost, and the target is absolute, so a retried activity never adds twice.
import { log } from '@temporalio/workflow';
import { isTerminatingState } from '../shared/ids.js';
import { setDesiredCapacity } from './activities.js';
import type { IncreaseCapacityRequest } from './api.js';
import type { GroupState } from './group-state.js';

export async function applyIncreases(state: GroupState, batch: IncreaseCapacityRequest[]): Promise<void> {
  const group = await state.lookAtGroup();
  const room = Math.max(0, group.maxSize - group.desiredCapacity);
  const granted = batch.slice(0, room);
  if (granted.length > 0) {
    const desiredTarget = group.desiredCapacity + granted.length;
    const { requestedAt } = await setDesiredCapacity({ asgName: state.asgName, desiredCapacity: desiredTarget });
    state.appliedChanges++;
    const instancesBefore = group.instances.filter((i) => !isTerminatingState(i.lifecycleState)).map((i) => i.instanceId);
    const at = new Date().toISOString();
    for (const request of granted) {
      state.waiters.add(request, requestedAt, instancesBefore, Date.now());
      const result = { status: 'granted' as const, desiredBefore: group.desiredCapacity, desiredTarget, appliedAt: requestedAt };
      state.ledger.record(request.requestId, 'increase', result, at);
    }
    log.info('desired capacity raised', { asgName: state.asgName, from: group.desiredCapacity, to: desiredTarget, requests: granted.length });
  }
  for (const request of batch.slice(granted.length)) {
    const result = { status: 'at-max-size' as const, desired: group.desiredCapacity, maxSize: group.maxSize };
    state.ledger.record(request.requestId, 'increase', result, new Date().toISOString());
  }
}
