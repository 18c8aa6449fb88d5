// The webhook: announced steps sent as JSON (or a Slack-compatible body) to one URL. An announcement chosen for it is
// signalled to the webhook workflow (workflows/webhook/), whose postWebhook activity posts it: durable, in order,
// retried with a growing delay for up to an hour. The URL stays in the worker and never appears in a log line or in a
// workflow's history (it carries the chat's token).
import { createHash } from 'node:crypto';
import { Context, log } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { EVENT_REASONS, type Step, type StepAnnouncement, WARNING_STEPS } from '../workflows/shared/announcements.js';
import type { WebhookActivities } from '../workflows/shared/activity-types.js';
import { workflowDetails, workflowSummaries } from '../workflows/shared/user-metadata.js';
import { type WebhookMessage, webhookMessageSignal, webhookWorkflowId } from '../workflows/webhook/api.js';
import type { webhookWorkflow } from '../workflows/webhook/workflow.js';
import type { DomainMetrics } from './domain-metrics.js';

export type WebhookFormat = 'json' | 'slack';

/** Where and what: a URL from a Secret, the steps chosen, the body's shape (worker/webhook-config.ts reads them). */
export interface WebhookConfig {
  url: URL;
  steps: ReadonlySet<Step>;
  format: WebhookFormat;
}

/** A message not delivered this long after its first attempt is given up on. */
export const WEBHOOK_GIVE_UP_MS = 3_600_000;
const ATTEMPT_TIMEOUT_MS = 10_000;

/** The message's id: a digest of the announcement's key, stable across retries, for a receiver (and the workflow) to dedupe. */
export function webhookMessageId(a: Pick<StepAnnouncement, 'key'>): string {
  return createHash('sha256').update(a.key).digest('hex').slice(0, 16);
}

/** The JSON message: what happened, where, and its details. */
export function webhookMessage(a: StepAnnouncement): Record<string, unknown> {
  return {
    id: webhookMessageId(a),
    source: 'spot-guard',
    step: a.step,
    reason: EVENT_REASONS[a.step],
    severity: WARNING_STEPS.has(a.step) ? 'warning' : 'info',
    at: a.at,
    message: a.message,
    instanceId: a.instanceId,
    ...(a.nodeName ? { node: a.nodeName } : {}),
    ...(a.otherNodeName ? { otherNode: a.otherNodeName } : {}),
    group: a.group,
    workflowId: a.workflowId,
    details: a.facts,
  };
}

/** Slack's incoming-webhook body (also accepted by Mattermost, Rocket.Chat and Teams' Slack-compatible connectors). */
export function slackMessage(a: StepAnnouncement): Record<string, unknown> {
  const icon = WARNING_STEPS.has(a.step) ? ':warning:' : a.step === 'reverted-to-spot' ? ':white_check_mark:' : ':information_source:';
  const where = [a.nodeName ? `node \`${a.nodeName}\`` : undefined, `instance \`${a.instanceId}\``, `group \`${a.group}\``].filter(Boolean).join(', ');
  return { text: `${icon} *Spot Guard: ${EVENT_REASONS[a.step]}* (${where})\n${a.message}` };
}

/**
 * The announcer's hand-off: an announcement chosen for the webhook, signalled to the webhook workflow (started by the
 * first message). Throws if Temporal does not take it, so the announcing activity tries again.
 */
export function webhookQueue(temporal: Client, taskQueue: string, config: WebhookConfig): (announcement: StepAnnouncement) => Promise<void> {
  return async (announcement) => {
    if (!config.steps.has(announcement.step)) return;
    const body = JSON.stringify(config.format === 'slack' ? slackMessage(announcement) : webhookMessage(announcement));
    await temporal.workflow.signalWithStart<typeof webhookWorkflow, [WebhookMessage]>('webhookWorkflow', {
      workflowId: webhookWorkflowId(taskQueue),
      taskQueue,
      args: [{}],
      signal: webhookMessageSignal,
      signalArgs: [{ id: webhookMessageId(announcement), body }],
      staticSummary: workflowSummaries.webhook(),
      staticDetails: workflowDetails.webhook(),
    });
  };
}

/**
 * postWebhook: one attempt. A failure that retrying may cure throws (the workflow's retry policy backs off); a 4xx
 * other than 408 and 429, or a message an hour old, is given up on and answered `delivered: false`.
 */
export function createWebhookActivities(config: WebhookConfig | undefined, metrics: Pick<DomainMetrics, 'webhookMessages'>): WebhookActivities {
  return {
    async postWebhook({ body }) {
      if (!config) return dropped(metrics, 'the webhook is off on this worker (no SPOT_GUARD_WEBHOOK_URL)');
      const { attempt, scheduledTimestampMs } = Context.current().info;
      const failure = await post(config.url, body);
      if (failure === undefined) {
        metrics.webhookMessages({ result: 'delivered' });
        if (attempt > 1) log.warn(`webhook: delivered after ${attempt} attempts`);
        return { delivered: true };
      }
      // The next attempt comes after up to 30 s: one that would start past the hour is not made.
      if (failure.final || Date.now() + 30_000 - scheduledTimestampMs > WEBHOOK_GIVE_UP_MS) {
        return dropped(metrics, `${failure.reason} after ${attempt} attempt(s)`);
      }
      metrics.webhookMessages({ result: 'retried' });
      // One line for the first failure of a message, not one per attempt.
      if (attempt === 1) log.warn(`webhook: delivery failed (${failure.reason}); retrying with backoff`);
      throw ApplicationFailure.retryable(`webhook: delivery failed (${failure.reason})`, 'WebhookDeliveryFailed');
    },
  };
}

function dropped(metrics: Pick<DomainMetrics, 'webhookMessages'>, reason: string): { delivered: false; reason: string } {
  metrics.webhookMessages({ result: 'dropped' });
  log.warn(`webhook: message dropped: ${reason}`);
  return { delivered: false, reason };
}

/** undefined: delivered (2xx). A 4xx other than 408 and 429 will not change by retrying. Never the URL in a reason. */
async function post(url: URL, body: string): Promise<{ reason: string; final: boolean } | undefined> {
  try {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'spot-guard' },
      body,
      redirect: 'error',
      signal: AbortSignal.timeout(ATTEMPT_TIMEOUT_MS),
    });
    await response.body?.cancel();
    if (response.ok) return undefined;
    const { status } = response;
    return { reason: `HTTP ${status}`, final: status >= 400 && status < 500 && status !== 408 && status !== 429 };
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause;
    const name = (error as Error).name;
    return { reason: cause?.code ?? (name === 'TimeoutError' ? `no answer within ${ATTEMPT_TIMEOUT_MS / 1000} s` : name), final: false };
  }
}
