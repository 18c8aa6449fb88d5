// The webhook workflow's contract: the messages it is sent (one signal each, the body already in the chosen format),
// its status query, and its id. One workflow per installation (its groups' task queue) delivers every message in order.
import { defineQuery, defineSignal } from '@temporalio/workflow';

/**
 * The one webhook workflow of an installation, named by its groups' task queue (two clusters sharing a namespace have
 * their own queues): every worker sends its messages there (signal-with-start), and it runs on that queue.
 */
export const webhookWorkflowId = (groupTaskQueue: string): string => `spot-guard-webhook-${groupTaskQueue}`;

export interface WebhookMessage {
  /** Stable for a step (a digest of its key): a message sent again (a retried announcement, another replica) is dropped. */
  id: string;
  /** The request body, JSON text in the configured shape (JSON or Slack-compatible). Holds no secret: the URL stays in the worker. */
  body: string;
}

export interface WebhookWorkflowInput {
  /** Continue-as-new's carry: messages not yet delivered, and the ids seen lately. */
  carried?: { queue: WebhookMessage[]; recent: string[] };
  /** Continue-as-new after this many history events (tests set it low). */
  historyBound?: number;
}

export interface WebhookStatus {
  queued: number;
  delivered: number;
  dropped: number;
  /** The latest message given up on, and why. */
  lastDropped?: { id: string; reason: string };
}

export const webhookMessageSignal = defineSignal<[WebhookMessage]>('webhookMessage');
export const webhookStatusQuery = defineQuery<WebhookStatus>('webhookStatus');

/** Throws, naming the bad value, for a message no endpoint should get. */
export function validateWebhookMessage(message: WebhookMessage): void {
  if (typeof message?.id !== 'string' || !/^[0-9a-f]{16}$/.test(message.id)) throw new Error(`webhook message id ${JSON.stringify(message?.id)} is not 16 hex digits`);
  if (typeof message.body !== 'string' || message.body.length === 0 || message.body.length > 64 * 1024) {
    throw new Error(`webhook message ${message.id}: body of ${typeof message.body === 'string' ? `${message.body.length} characters` : typeof message.body}: expected JSON text of 1 to 65536 characters`);
  }
}
