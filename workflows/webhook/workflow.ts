// The webhook's delivery, made durable: each announced step chosen for the webhook arrives here as a signal and is
// posted by the postWebhook activity, one message at a time in arrival order, retried with backoff for up to an hour.
// A worker that dies loses nothing (the queue is this workflow's state), a flow never waits for it (the announcing
// activity only signals), and a message sent twice (a retried announcement, another replica) is dropped by its id.
import { allHandlersFinished, condition, continueAsNew, log, setHandler, workflowInfo } from '@temporalio/workflow';
import { rootMessage } from '../shared/failures.js';
import { postWebhook } from './activities.js';
import { type WebhookMessage, webhookMessageSignal, type WebhookStatus, webhookStatusQuery, type WebhookWorkflowInput, validateWebhookMessage } from './api.js';

/** Messages waiting at most: beyond, the oldest is dropped (an endpoint down for hours during a large wave). */
export const WEBHOOK_QUEUE_LIMIT = 1000;
/** Ids remembered for dropping repeats: far more than a wave's messages in the minutes a repeat can come within. */
const RECENT_IDS = 5000;
const DEFAULT_HISTORY_BOUND = 10_000;

export async function webhookWorkflow(input: WebhookWorkflowInput = {}): Promise<never> {
  const queue: WebhookMessage[] = [...(input.carried?.queue ?? [])];
  const recent = new RecentIds(input.carried?.recent ?? []);
  const status: WebhookStatus = { queued: 0, delivered: 0, dropped: 0 };
  setHandler(webhookStatusQuery, () => ({ ...status, queued: queue.length }));
  setHandler(webhookMessageSignal, (message) => {
    try {
      validateWebhookMessage(message);
    } catch (error) {
      log.error('malformed webhook message ignored', { error: rootMessage(error) });
      return;
    }
    if (!recent.add(message.id)) return;
    queue.push(message);
    if (queue.length > WEBHOOK_QUEUE_LIMIT) drop(status, queue.shift() as WebhookMessage, `the queue is full (${WEBHOOK_QUEUE_LIMIT} messages)`);
  });
  const historyBound = input.historyBound ?? DEFAULT_HISTORY_BOUND;
  const shouldContinueAsNew = (): boolean => workflowInfo().continueAsNewSuggested || workflowInfo().historyLength >= historyBound;
  for (;;) {
    await condition(() => queue.length > 0 || shouldContinueAsNew());
    if (shouldContinueAsNew()) {
      // Signals that arrive until the very end are in `queue`, which is carried.
      await condition(allHandlersFinished);
      return continueAsNew<typeof webhookWorkflow>({ carried: { queue, recent: recent.ids() }, historyBound: input.historyBound });
    }
    const next = queue[0];
    if (next) await deliver(status, next);
    queue.shift();
  }
}

/** One message: delivered, or given up on by the activity (refused for good, or an hour old), never blocking the next for longer. */
async function deliver(status: WebhookStatus, message: WebhookMessage): Promise<void> {
  try {
    const result = await postWebhook(message);
    if (result.delivered) status.delivered++;
    else drop(status, message, result.reason);
  } catch (error) {
    drop(status, message, rootMessage(error));
  }
}

function drop(status: WebhookStatus, message: WebhookMessage, reason: string): void {
  status.dropped++;
  status.lastDropped = { id: message.id, reason };
  log.warn('webhook message dropped', { id: message.id, reason });
}

/** A bounded set of ids in arrival order: the oldest are forgotten first. */
class RecentIds {
  private readonly seen: Set<string>;

  constructor(ids: string[]) {
    this.seen = new Set(ids);
  }

  /** false: seen lately already. */
  add(id: string): boolean {
    if (this.seen.has(id)) return false;
    this.seen.add(id);
    if (this.seen.size > RECENT_IDS) this.seen.delete(this.seen.values().next().value as string);
    return true;
  }

  ids(): string[] {
    return [...this.seen];
  }
}
