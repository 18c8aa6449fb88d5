// The capacity workflow's own gauges and counters, per group: how many requests and drains wait in its queues, how
// many workflows wait for an instance, and how many polls it made. Recorded from workflow code through the SDK's
// workflow meter, which records nothing while a workflow replays: a replayed history counts no poll twice.
import { metricMeter } from '@temporalio/workflow';
import type { GroupState } from './group-state.js';

/** Their names and meanings (docs/observability.md lists them; a test checks it, and the dashboard). */
export const CAPACITY_METRICS = {
  polls: ['spot_guard_capacity_polls_total', 'Looks at a group for the workflows waiting for an instance, by group and what was read'],
  queue: ['spot_guard_capacity_queue', 'Requests (increases, retirements) waiting in a group\'s capacity workflow'],
  waiters: ['spot_guard_capacity_waiters', 'Workflows waiting for a new instance of a group'],
  drainQueue: ['spot_guard_drain_queue', 'Nodes queued by a group\'s disruption budget'],
  draining: ['spot_guard_draining', 'Nodes of a group draining now'],
} as const;

/** One look at the group for its waiters (`read`: the group and its scaling activities, or its instances alone). */
export function countPoll<L extends { instancesOnly?: true }>(state: GroupState, look: L): L {
  const read = look.instancesOnly ? 'instances' : 'instances-and-activities';
  const [name, description] = CAPACITY_METRICS.polls;
  metricMeter.createCounter(name, '', description).add(1, { group: state.asgName, read });
  return look;
}

/** The queues as they are after a turn of the loop. */
export function showQueues(state: GroupState): void {
  const tags = { group: state.asgName };
  const gauge = ([name, description]: readonly [string, string]) => metricMeter.createGauge(name, 'int', '', description);
  gauge(CAPACITY_METRICS.queue).set(state.ledger.queue.length, tags);
  gauge(CAPACITY_METRICS.waiters).set(state.waiters.count, tags);
  gauge(CAPACITY_METRICS.drainQueue).set(state.drains.queue.queued.length, tags);
  gauge(CAPACITY_METRICS.draining).set(state.drains.queue.draining.length, tags);
}
