// The webhook workflow's one activity and its retry options.
import { proxyActivities } from '@temporalio/workflow';
import type { WebhookActivities } from '../shared/activity-types.js';
import { withSummaries } from '../shared/user-metadata.js';

/**
 * Retried with a growing delay (1 s to 30 s) while the endpoint is down; the activity itself gives up an hour after
 * the first attempt (and counts the message dropped), the timeout below is only the backstop.
 */
export const { postWebhook } = withSummaries(proxyActivities<WebhookActivities>({
  startToCloseTimeout: '20 seconds',
  scheduleToCloseTimeout: '70 minutes',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
}));
