// Spot Guard's domain metrics: what happened to notices, capacity, drains and fallbacks, on the worker's Prometheus
// endpoint beside the SDK's own. Recorded by activities only (announceStep, the drain), which a replay never runs
// again; an announcement retried after a failed attempt is recognised by its key and counted once.
import { type MetricMeter, type MetricTags, noopMetricMeter } from '@temporalio/common';
import type { StepAnnouncement, StepFacts } from '../workflows/shared/announcements.js';

/** Announcement keys remembered to recognise a retry; far more than a wave's steps in flight at once. */
const REMEMBERED_KEYS = 20_000;

/** Seconds; the histograms' buckets (worker/metrics.ts hands them to the SDK's exporter). */
export const DURATION_BUCKETS_SECONDS = [1, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600];

export const DOMAIN_HISTOGRAMS = [
  'spot_guard_replacement_seconds',
  'spot_guard_taint_lag_seconds',
  'spot_guard_drain_seconds',
  'spot_guard_fallback_to_revert_seconds',
] as const;

/** Capacity error codes AWS uses; anything else is counted by what the workflow saw (max-size, timeout, other). */
const AWS_CAPACITY_CODES = ['InsufficientInstanceCapacity', 'UnfulfillableCapacity', 'MaxSpotInstanceCountExceeded', 'VcpuLimitExceeded'];

export function capacityErrorCode(reason: string | undefined): string {
  const text = reason ?? '';
  const named = AWS_CAPACITY_CODES.find((code) => text.includes(code));
  if (named) return named;
  if (/do not have sufficient .*capacity/i.test(text)) return 'InsufficientInstanceCapacity';
  if (/MaxSize/.test(text)) return 'max-size';
  if (/within \d+ s|did not answer/.test(text)) return 'timeout';
  return 'other';
}

export class DomainMetrics {
  private readonly counted = new Set<string>();
  private readonly held = new Map<string, string>();
  private readonly counter: (name: string, description: string) => (tags: MetricTags, value?: number) => void;
  private readonly histogram: (name: string, description: string) => (seconds: number, tags: MetricTags) => void;
  private readonly heldGauge;

  constructor(meter: MetricMeter = noopMetricMeter) {
    this.counter = (name, description) => {
      const metric = meter.createCounter(name, '', description);
      return (tags, value = 1) => metric.add(Math.max(0, Math.round(value)), tags);
    };
    this.histogram = (name, description) => {
      const metric = meter.createHistogram(name, 'int', 's', description);
      return (seconds, tags) => metric.record(Math.max(0, Math.round(seconds)), tags);
    };
    this.heldGauge = meter.createGauge('spot_guard_nodes_held', 'int', '', 'Warned nodes tainted and kept with their pods for lack of replacement capacity');
    this.define();
  }

  /** Counts what an announcement says happened, once per key. False: a retry of one counted already. */
  record(announcement: StepAnnouncement): boolean {
    if (this.counted.has(announcement.key)) return false;
    this.remember(announcement.key);
    this.countStep(announcement, announcement.facts);
    return true;
  }

  /** Kubernetes Events by result. */
  eventsWritten!: (tags: { result: 'created' | 'duplicate' | 'failed' }) => void;
  /** Webhook messages by result. */
  webhookMessages!: (tags: { result: 'delivered' | 'retried' | 'dropped' }) => void;
  /** Evictions a PodDisruptionBudget refused (HTTP 429), each attempt: a drain held by a budget. */
  evictionRefused!: (tags: MetricTags) => void;

  private notices!: (tags: MetricTags) => void;
  private outcomes!: (tags: MetricTags) => void;
  private capacityErrors!: (tags: MetricTags) => void;
  private fallbacks!: (tags: MetricTags) => void;
  private evicted!: (tags: MetricTags, value?: number) => void;
  private podsLeft!: (tags: MetricTags, value?: number) => void;
  private holds!: (tags: MetricTags) => void;
  private reverts!: (tags: MetricTags) => void;
  private fallbackSeconds!: (tags: MetricTags, value?: number) => void;
  private replacementSeconds!: (seconds: number, tags: MetricTags) => void;
  private taintLag!: (seconds: number, tags: MetricTags) => void;
  private drainSeconds!: (seconds: number, tags: MetricTags) => void;
  private revertSeconds!: (seconds: number, tags: MetricTags) => void;

  private define(): void {
    this.eventsWritten = this.counter('spot_guard_kubernetes_events_total', 'Kubernetes Events by result: created, duplicate (a retried announcement), failed');
    this.webhookMessages = this.counter('spot_guard_webhook_messages_total', 'Webhook messages by result: delivered, retried (an attempt failed), dropped (queue full or gave up)');
    this.evictionRefused = this.counter('spot_guard_evictions_refused_total', 'Evictions refused by a PodDisruptionBudget (each refused attempt)');
    this.notices = this.counter('spot_guard_notices_received_total', 'Notices accepted (verified) by kind: rebalance-recommendation, spot-interruption (also when it follows a recommendation)');
    this.outcomes = this.counter('spot_guard_notices_total', 'Notices by kind and outcome: spot, on-demand, capacity-unavailable, rejected');
    this.capacityErrors = this.counter('spot_guard_capacity_errors_total', 'Replacement attempts that found no capacity, by group and code');
    this.fallbacks = this.counter('spot_guard_on_demand_fallbacks_total', 'Falls back to the on-demand group, by spot group');
    this.evicted = this.counter('spot_guard_pods_evicted_total', 'Pods evicted from warned nodes');
    this.podsLeft = this.counter('spot_guard_drain_pods_left_total', 'Pods a drain ended with on the node, by why: unrecreatable (left on purpose), remaining (budget or still terminating)');
    this.holds = this.counter('spot_guard_nodes_held_total', 'Warned nodes held for lack of capacity');
    this.reverts = this.counter('spot_guard_reverts_total', 'On-demand fallback instances removed once spot was healthy again, by on-demand group');
    this.fallbackSeconds = this.counter('spot_guard_on_demand_fallback_instance_seconds_total', 'On-demand instance-seconds run as fallbacks, counted when each is removed (divide by 3600: instance-hours)');
    this.replacementSeconds = this.histogram('spot_guard_replacement_seconds', 'Seconds from the notice to the replacement InService and Ready, by kind');
    this.taintLag = this.histogram('spot_guard_taint_lag_seconds', 'Seconds from the notice to the taint, by notice kind');
    this.drainSeconds = this.histogram('spot_guard_drain_seconds', 'Seconds a drain took (cordon to the last eviction answered)');
    this.revertSeconds = this.histogram('spot_guard_fallback_to_revert_seconds', 'Seconds from an on-demand fallback launch to its removal, by on-demand group');
  }

  private countStep({ step, group, workflowId }: StepAnnouncement, facts: StepFacts): void {
    const notice = facts.notice ?? 'rebalance-recommendation';
    switch (step) {
      case 'notice-received':
      case 'interruption-received':
        return this.notices({ notice, group });
      case 'rejected':
        return this.outcomes({ notice, outcome: 'rejected', group });
      case 'on-demand-fallback':
        this.capacityErrors({ group, code: capacityErrorCode(facts.reason) });
        return this.fallbacks({ group });
      case 'no-capacity':
        this.capacityErrors({ group: facts.capacityGroup ?? group, code: capacityErrorCode(facts.reason) });
        return this.outcomes({ notice, outcome: 'capacity-unavailable', group });
      case 'replacement-ready':
        if (facts.seconds !== undefined) this.replacementSeconds(facts.seconds, { kind: facts.kind ?? 'spot' });
        if (!facts.late) this.outcomes({ notice, outcome: facts.kind ?? 'spot', group });
        return;
      case 'tainted':
        if (facts.seconds !== undefined) this.taintLag(facts.seconds, { notice });
        return;
      case 'held':
        this.holds({ group });
        this.held.set(workflowId, group);
        return this.showHeld(group);
      case 'drained':
        return this.countDrain(workflowId, facts);
      case 'hold-ended':
        return this.endHold(workflowId);
      case 'reverted-to-spot':
        this.reverts({ group });
        if (facts.seconds === undefined) return;
        this.fallbackSeconds({ group }, facts.seconds);
        return this.revertSeconds(facts.seconds, { group });
      default:
        return;
    }
  }

  private countDrain(workflowId: string, facts: StepFacts): void {
    if (facts.seconds !== undefined) this.drainSeconds(facts.seconds, {});
    this.evicted({}, facts.evicted ?? 0);
    this.podsLeft({ why: 'unrecreatable' }, facts.left ?? 0);
    this.podsLeft({ why: 'remaining' }, facts.remaining ?? 0);
    this.endHold(workflowId);
  }

  /** A held node drained at last, or its run ended without a drain (kept, or the instance gone). */
  private endHold(workflowId: string): void {
    const heldIn = this.held.get(workflowId);
    if (heldIn === undefined) return;
    this.held.delete(workflowId);
    this.showHeld(heldIn);
  }

  private showHeld(group: string): void {
    this.heldGauge.set([...this.held.values()].filter((g) => g === group).length, { group });
  }

  private remember(key: string): void {
    this.counted.add(key);
    if (this.counted.size <= REMEMBERED_KEYS) return;
    const oldest = this.counted.values().next().value;
    if (oldest !== undefined) this.counted.delete(oldest);
  }
}
