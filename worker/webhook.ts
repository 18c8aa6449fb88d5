// The webhook: announced steps sent as JSON (or a Slack-compatible body) to one URL, from the worker process in the
// background. A bounded queue, one message at a time in order, each retried with a growing delay until delivered or an
// hour old; a flow never waits for it. The URL never appears in a log line (it carries the chat's token).
import { createHash } from 'node:crypto';
import type { DomainMetrics } from '../activities/domain-metrics.js';
import { EVENT_REASONS, type StepAnnouncement, WARNING_STEPS } from '../workflows/shared/announcements.js';
import type { WorkerLog } from './log.js';
import type { WebhookConfig } from './webhook-config.js';

export interface WebhookOptions {
  /** Messages waiting at most; the oldest is dropped (and counted) beyond. */
  queueLimit?: number;
  firstRetryMs?: number;
  maxRetryMs?: number;
  /** A message not delivered this long after it was queued is dropped. */
  giveUpAfterMs?: number;
  attemptTimeoutMs?: number;
}

interface Queued {
  body: string;
  queuedAt: number;
}

/** The JSON message: what happened, where, and its details; `id` is stable across retries, for a receiver to dedupe. */
export function webhookMessage(a: StepAnnouncement): Record<string, unknown> {
  return {
    id: createHash('sha256').update(a.key).digest('hex').slice(0, 16),
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

export class WebhookSender {
  private readonly queue: Queued[] = [];
  private readonly options: Required<WebhookOptions>;
  private running?: Promise<void>;
  private closing = false;
  private wake?: () => void;

  constructor(
    private readonly config: WebhookConfig,
    private readonly metrics: Pick<DomainMetrics, 'webhookMessages'>,
    private readonly log: Pick<WorkerLog, 'warn'>,
    options: WebhookOptions = {},
  ) {
    this.options = { queueLimit: 1000, firstRetryMs: 1000, maxRetryMs: 30_000, giveUpAfterMs: 3_600_000, attemptTimeoutMs: 10_000, ...options };
  }

  /** Queues the announcement if its step is chosen; returns at once. */
  readonly notify = (announcement: StepAnnouncement): void => {
    if (this.closing || !this.config.steps.has(announcement.step)) return;
    const body = JSON.stringify(this.config.format === 'slack' ? slackMessage(announcement) : webhookMessage(announcement));
    this.queue.push({ body, queuedAt: Date.now() });
    if (this.queue.length > this.options.queueLimit) {
      this.queue.shift();
      this.metrics.webhookMessages({ result: 'dropped' });
      this.log.warn(`webhook: queue full (${this.options.queueLimit} messages): the oldest dropped`);
    }
    this.running ??= this.deliverAll().finally(() => {
      this.running = undefined;
    });
  };

  /** Stops taking messages; waits up to `graceMs` for those queued, then leaves the rest. */
  async close(graceMs = 5_000): Promise<void> {
    this.closing = true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.running, new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
    this.wake?.();
  }

  private async deliverAll(): Promise<void> {
    // The message being delivered is out of the queue: the queue's limit drops only messages still waiting.
    for (let next = this.queue.shift(); next; next = this.queue.shift()) await this.deliver(next);
  }

  /** One message, retried with a growing delay until delivered, refused for good, or too old. */
  private async deliver(message: Queued): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const failure = await this.post(message.body);
      if (failure === undefined) {
        this.metrics.webhookMessages({ result: 'delivered' });
        if (attempt > 0) this.log.warn(`webhook: delivered after ${attempt + 1} attempts`);
        return;
      }
      const delay = Math.min(this.options.maxRetryMs, this.options.firstRetryMs * 2 ** attempt);
      const tooOld = Date.now() + delay - message.queuedAt > this.options.giveUpAfterMs;
      if (failure.final || tooOld || this.closing) {
        this.metrics.webhookMessages({ result: 'dropped' });
        this.log.warn(`webhook: message dropped after ${attempt + 1} attempt(s): ${failure.reason}`);
        return;
      }
      this.metrics.webhookMessages({ result: 'retried' });
      // One line for the first failure of a message, not one per attempt.
      if (attempt === 0) this.log.warn(`webhook: delivery failed (${failure.reason}); retrying with backoff, ${this.queue.length} message(s) queued`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay * (0.8 + Math.random() * 0.4));
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** undefined: delivered (2xx). A 4xx other than 408 and 429 will not change by retrying. Never the URL in a reason. */
  private async post(body: string): Promise<{ reason: string; final: boolean } | undefined> {
    try {
      const response = await fetch(this.config.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'spot-guard' },
        body,
        redirect: 'error',
        signal: AbortSignal.timeout(this.options.attemptTimeoutMs),
      });
      await response.body?.cancel();
      if (response.ok) return undefined;
      const { status } = response;
      return { reason: `HTTP ${status}`, final: status >= 400 && status < 500 && status !== 408 && status !== 429 };
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause;
      const name = (error as Error).name;
      return { reason: cause?.code ?? (name === 'TimeoutError' ? `no answer within ${this.options.attemptTimeoutMs / 1000} s` : name), final: false };
    }
  }
}
