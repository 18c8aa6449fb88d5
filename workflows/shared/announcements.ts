// What the workflows announce to operators at each step of a flow: one announcement becomes a Kubernetes Event on the
// node(s) it is about, Prometheus counts and, when chosen, a webhook message. The workflows build it; one activity
// (`announceStep`, activities/announce.ts) delivers it, so a replayed workflow adds nothing (the activity's result is
// in the history) and a retried one is recognised by its key.

/** The steps of a flow an operator is told about, in the order they usually come. */
export const STEPS = [
  'notice-received',
  'interruption-received',
  'rejected',
  'replacement-requested',
  'on-demand-fallback',
  'replacement-ready',
  'no-capacity',
  'tainted',
  'held',
  'hold-ended',
  'drained',
  'reverted-to-spot',
] as const;
export type Step = (typeof STEPS)[number];

/** The Event reason of each step: stable, CamelCase like the Node Termination Handler's (`kubectl get events`). */
export const EVENT_REASONS: Record<Step, string> = {
  'notice-received': 'RebalanceNotice',
  'interruption-received': 'SpotInterruption',
  rejected: 'RebalanceRejected',
  'replacement-requested': 'ReplacementRequested',
  'on-demand-fallback': 'OnDemandFallback',
  'replacement-ready': 'ReplacementReady',
  'no-capacity': 'NoReplacementCapacity',
  tainted: 'Tainted',
  held: 'HeldForCapacity',
  'hold-ended': 'HoldEnded',
  drained: 'Drained',
  'reverted-to-spot': 'RevertedToSpot',
};

/** Steps an operator should look at: Events of type Warning. */
export const WARNING_STEPS: ReadonlySet<Step> = new Set(['rejected', 'no-capacity', 'held']);

/**
 * The group of a refusal before verify found the instance in a protected pair (a node that is not the instance's, a
 * group Spot Guard does not protect): one label for all of them, so an unprotected group's name adds no metric series.
 */
export const UNPROTECTED_GROUP = 'none';

export type NoticeKind = 'rebalance-recommendation' | 'spot-interruption';

/** Facts a step carries, for the metrics and the webhook's `details`; all optional, each step sets its own. */
export interface StepFacts {
  notice?: NoticeKind;
  /** spot or on-demand: the replacement's kind, or the group a request went to. */
  kind?: 'spot' | 'on-demand';
  /** How the notice ended for capacity: spot, on-demand, capacity-unavailable, rejected. */
  outcome?: string;
  replacementInstanceId?: string;
  replacementNodeName?: string;
  /** Why (a fallback, a refusal, no capacity): the failure as the workflow saw it. */
  reason?: string;
  /** Seconds since the notice (replacement ready, tainted), or that the step took (drained), or the fallback ran. */
  seconds?: number;
  evicted?: number;
  left?: number;
  remaining?: number;
  desiredTarget?: number;
  /** The group a capacity step was about (a request, a capacity error), when not the announcement's own group. */
  capacityGroup?: string;
  /** The late replacement of a held node: its outcome was counted already (capacity-unavailable). */
  late?: boolean;
}

export interface StepAnnouncement {
  /** Stable across retries and replays: the workflow id, the step and its occurrence. Names the Event, dedupes counts. */
  key: string;
  step: Step;
  workflowId: string;
  /** When the step happened (workflow time). */
  at: string;
  /** The node the Event goes on; none: no Event (a request naming a node that is not the instance's). */
  nodeName?: string;
  /** A second node the step is about (the replacement's, the fallback's): the same Event goes on it too. */
  otherNodeName?: string;
  instanceId: string;
  /** The warned instance's spot group (the monitor: its on-demand group; a refusal before verify found one: UNPROTECTED_GROUP). */
  group: string;
  message: string;
  facts: StepFacts;
}
