// announceStep: a step of a flow told to operators. A Kubernetes Event on the node(s) it is about (core/v1, in the
// `default` namespace where node Events live, source `spot-guard`), the domain metrics, and a message to the webhook
// workflow. The Event's name and the message's id are derived from the announcement's key, so a retried announcement
// finds its Event there already and its message is dropped as a repeat. An API server that is down costs the Event,
// never the flow; a message Temporal did not take fails the attempt, so the next one sends it again.
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import type { CoreV1Api, CoreV1Event } from '@kubernetes/client-node';
import { log } from '@temporalio/activity';
import type { AnnounceActivities } from '../workflows/shared/activity-types.js';
import { EVENT_REASONS, type StepAnnouncement, WARNING_STEPS } from '../workflows/shared/announcements.js';
import { DomainMetrics } from './domain-metrics.js';
import { kubernetesStatus } from './errors.js';

/** Node Events live in this namespace (the kubelet's and the Node Termination Handler's do too). */
export const NODE_EVENTS_NAMESPACE = 'default';
export const EVENT_SOURCE = 'spot-guard';
const EVENT_WRITE_TIMEOUT_MS = 5_000;

export type EventsApi = Pick<CoreV1Api, 'createNamespacedEvent'>;

export interface Announcer {
  /** Where Events go; none: no Events (the tests of workflows alone). */
  events?: EventsApi;
  metrics: DomainMetrics;
  /** Hands the announcement to the webhook workflow (it chooses what to send; activities/webhook.ts); throws if not taken. */
  webhook?: (announcement: StepAnnouncement) => Promise<void>;
}

export function createAnnounceActivities(announcer: Announcer = { metrics: new DomainMetrics() }): AnnounceActivities {
  return { announceStep: (announcement) => announceStep(announcer, announcement) };
}

async function announceStep({ events, metrics, webhook }: Announcer, announcement: StepAnnouncement): Promise<void> {
  // A retried attempt: counted by the first one already; its Events are found by name below, its message a repeat.
  metrics.record(announcement);
  const nodes = events ? [announcement.nodeName, announcement.otherNodeName].filter((n): n is string => n !== undefined && n !== '') : [];
  // The Events are written whatever becomes of the webhook's message (writeEvent never throws), before its failure is.
  const [, sent] = await Promise.allSettled([Promise.all(nodes.map((node) => writeEvent(events as EventsApi, metrics, nodeEvent(announcement, node)))), sendToWebhook(webhook, announcement)]);
  if (sent.status === 'rejected') throw sent.reason;
}

async function sendToWebhook(webhook: Announcer['webhook'], announcement: StepAnnouncement): Promise<void> {
  try {
    await webhook?.(announcement);
  } catch (error) {
    log.warn('webhook: Temporal did not take the message; the announcement is tried again', { step: announcement.step, error: (error as Error).message });
    throw error;
  }
}

async function writeEvent(events: EventsApi, metrics: DomainMetrics, event: CoreV1Event): Promise<void> {
  try {
    await withTimeout(events.createNamespacedEvent({ namespace: NODE_EVENTS_NAMESPACE, body: event }));
    metrics.eventsWritten({ result: 'created' });
  } catch (error) {
    if (kubernetesStatus(error) === 409) {
      metrics.eventsWritten({ result: 'duplicate' });
      return;
    }
    metrics.eventsWritten({ result: 'failed' });
    log.warn('could not write a Kubernetes Event; the flow goes on', { reason: event.reason, node: event.involvedObject.name, error: (error as Error).message });
  }
}

/** The Event's name: the node's, and a digest of the announcement's key and the node (stable, so a retry collides). */
export function eventName(key: string, nodeName: string): string {
  const digest = createHash('sha256').update(`${key}\n${nodeName}`).digest('hex').slice(0, 16);
  return `${nodeName.slice(0, 200)}.${digest}`;
}

export function nodeEvent(announcement: StepAnnouncement, nodeName: string): CoreV1Event {
  const at = new Date(announcement.at);
  return {
    metadata: {
      name: eventName(announcement.key, nodeName),
      namespace: NODE_EVENTS_NAMESPACE,
      labels: { 'app.kubernetes.io/managed-by': 'spot-guard' },
      annotations: { 'spot-guard.io/workflow-id': announcement.workflowId, 'spot-guard.io/instance-id': announcement.instanceId, 'spot-guard.io/group': announcement.group },
    },
    // A node's Events name it by its name as uid too, as the kubelet's do: `kubectl describe node` finds them.
    involvedObject: { kind: 'Node', apiVersion: 'v1', name: nodeName, uid: nodeName },
    reason: EVENT_REASONS[announcement.step],
    message: announcement.message.slice(0, 1024),
    type: WARNING_STEPS.has(announcement.step) ? 'Warning' : 'Normal',
    source: { component: EVENT_SOURCE },
    reportingComponent: `${EVENT_SOURCE}.io/worker`,
    reportingInstance: hostname().slice(0, 128),
    firstTimestamp: at,
    lastTimestamp: at,
    count: 1,
  };
}

function withTimeout<T>(promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${EVENT_WRITE_TIMEOUT_MS / 1000} s`)), EVENT_WRITE_TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
