// The webhook workflow on the time-skipping test server, with a fake postWebhook: messages delivered one at a time in
// arrival order, a repeat (same id) dropped, a message the activity gives up on dropped while the next goes on, a
// failing endpoint retried with backoff until it answers, malformed messages ignored, and the queue carried across
// continue-as-new.
import assert from 'node:assert/strict';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import type { WebhookActivities } from '../workflows/shared/activity-types.js';
import { type WebhookMessage, webhookMessageSignal, webhookStatusQuery, webhookWorkflowId } from '../workflows/webhook/api.js';
import type { webhookWorkflow } from '../workflows/webhook/workflow.js';
import { createTimeSkippingEnv, workflowBundle } from './helpers/temporal.js';
import { until } from '../scripts/peers/wait.js';

const TASK_QUEUE = 'webhook-test';
const WEBHOOK_WORKFLOW_ID = webhookWorkflowId(TASK_QUEUE);
const message = (n: number): WebhookMessage => ({ id: n.toString(16).padStart(16, '0'), body: JSON.stringify({ n }) });

describe('webhook workflow (time-skipping server)', function () {
  this.timeout(120_000);
  let env: TestWorkflowEnvironment;
  /** What the fake endpoint got, and how each call is answered (by default: delivered). */
  let posted: number[];
  let answer: (n: number, attempt: number) => Awaited<ReturnType<WebhookActivities['postWebhook']>>;
  const attempts = new Map<number, number>();

  beforeEach(async function () {
    env = await createTimeSkippingEnv();
    posted = [];
    attempts.clear();
    answer = () => ({ delivered: true });
  });
  afterEach(async function () {
    await env?.teardown();
  });

  async function withWorker<T>(run: () => Promise<T>): Promise<T> {
    const activities: WebhookActivities = {
      async postWebhook({ body }) {
        const { n } = JSON.parse(body) as { n: number };
        const attempt = (attempts.get(n) ?? 0) + 1;
        attempts.set(n, attempt);
        const result = answer(n, attempt);
        if (result.delivered) posted.push(n);
        return result;
      },
    };
    const worker = await Worker.create({ connection: env.nativeConnection, taskQueue: TASK_QUEUE, workflowBundle: await workflowBundle(), activities });
    return worker.runUntil(run());
  }

  async function send(...messages: WebhookMessage[]): Promise<void> {
    for (const m of messages) {
      await env.client.workflow.signalWithStart<typeof webhookWorkflow, [WebhookMessage]>('webhookWorkflow', {
        workflowId: WEBHOOK_WORKFLOW_ID,
        taskQueue: TASK_QUEUE,
        args: [{}],
        signal: webhookMessageSignal,
        signalArgs: [m],
      });
    }
  }

  const status = () => env.client.workflow.getHandle(WEBHOOK_WORKFLOW_ID).query(webhookStatusQuery);

  it('delivers in arrival order, drops a repeat by its id, and goes on past a message given up on', async function () {
    answer = (n) => (n === 3 ? { delivered: false, reason: 'HTTP 400 after 1 attempt(s)' } : { delivered: true });
    // A query needs a worker: the status is read while it runs.
    const s = await withWorker(async () => {
      await send(message(1), message(2), message(1), message(3), message(4));
      await until('every message handled', async () => ((s) => s.delivered + s.dropped === 4)(await status()), 30_000);
      return status();
    });
    assert.deepEqual(posted, [1, 2, 4]);
    assert.equal(s.dropped, 1);
    assert.deepEqual(s.lastDropped, { id: message(3).id, reason: 'HTTP 400 after 1 attempt(s)' });
    assert.equal(attempts.get(1), 1, 'the repeat of 1 was never posted');
  });

  it('a failing endpoint: the message is retried with backoff until it answers, and the next waits behind it', async function () {
    answer = (n, attempt) => {
      if (n === 1 && attempt < 4) throw new Error('webhook: delivery failed (ECONNREFUSED)');
      return { delivered: true };
    };
    await withWorker(async () => {
      await send(message(1), message(2));
      await until('both delivered', async () => (await status()).delivered === 2, 30_000);
    });
    assert.deepEqual(posted, [1, 2]);
    assert.equal(attempts.get(1), 4);
  });

  it('malformed messages are ignored; the queue is carried across continue-as-new', async function () {
    const started = await withWorker(async () => {
      const handle = await env.client.workflow.start('webhookWorkflow', { workflowId: WEBHOOK_WORKFLOW_ID, taskQueue: TASK_QUEUE, args: [{ historyBound: 40 }] });
      await send({ id: 'not-hex', body: '{}' }, { id: message(99).id, body: '' }, ...Array.from({ length: 30 }, (_, i) => message(i + 1)));
      await until('all delivered', async () => posted.length === 30, 60_000);
      return handle.firstExecutionRunId;
    });
    assert.deepEqual(posted, Array.from({ length: 30 }, (_, i) => i + 1), 'in order, each once, across runs; the malformed ones never posted');
    const now = await env.client.workflow.getHandle(WEBHOOK_WORKFLOW_ID).describe();
    assert.notEqual(now.runId, started, 'continued as new');
  });
});
