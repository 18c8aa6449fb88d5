// The capacity workflow's activities and their retry options.
import { proxyActivities } from '@temporalio/workflow';
import type { AutoScalingActivities, CapacityRequestActivities, MonitorRequestActivities, SurplusActivities } from '../shared/activity-types.js';
import { withSummaries } from '../shared/user-metadata.js';

const retry = { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' };

/** Changes and full looks: throttling and AWS-side errors back off and retry; after 10 minutes the request fails. */
export const { describeGroup, setDesiredCapacity, terminateInstanceInGroup } = withSummaries(proxyActivities<AutoScalingActivities>({
  startToCloseTimeout: '30 seconds',
  scheduleToCloseTimeout: '10 minutes',
  retry,
}));

/**
 * A poll is worth little once the next is due: a failed poll is "no news" and the waiters wait on. The causes of
 * departures likewise: without them a book is left unsettled, and an increase waiting behind the look must not wait long.
 */
export const { describeGroupProgress, describeDepartures } = withSummaries(proxyActivities<AutoScalingActivities>({
  startToCloseTimeout: '20 seconds',
  scheduleToCloseTimeout: '1 minute',
  retry,
}));

/** Answers that cannot be delivered within minutes are given up: the waiting workflows ask again or reach a backstop. */
export const { sendAnswers } = withSummaries(proxyActivities<CapacityRequestActivities>({
  startToCloseTimeout: '2 minutes',
  scheduleToCloseTimeout: '5 minutes',
  retry,
}));

/** A late on-demand fallback, reported to its pair's monitor. */
export const { reportFallbackToMonitor } = withSummaries(proxyActivities<MonitorRequestActivities>({
  startToCloseTimeout: '30 seconds',
  scheduleToCloseTimeout: '5 minutes',
  retry,
}));

/** The replacement a group launched on its own: terminated unless it has a node, else its drain started. */
export const { terminateUnlessNode, startSurplusDrain } = withSummaries(proxyActivities<SurplusActivities>({
  startToCloseTimeout: '30 seconds',
  scheduleToCloseTimeout: '10 minutes',
  retry,
}));
