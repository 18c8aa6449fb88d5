// The webhook's parts on their own, against a local HTTP server: its settings (errors never show the URL), the JSON
// and Slack bodies, one postWebhook attempt (delivered; a failure retrying may cure thrown for the workflow's backoff,
// with one log line; a refusal for good, an hour-old message and a worker without the webhook dropped), the hand-off
// to the webhook workflow (only the chosen steps, a stable id), and a log that never holds the URL.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { createWebhookActivities, slackMessage, type WebhookConfig, webhookMessageId, webhookQueue } from '../../activities/webhook.js';
import type { StepAnnouncement } from '../../workflows/shared/announcements.js';
import type { WebhookMessage } from '../../workflows/webhook/api.js';
import { loadWebhookConfig } from '../../worker/webhook-config.js';

const announcement = (n: number, step: StepAnnouncement['step'] = 'on-demand-fallback'): StepAnnouncement => ({
  key: `spot-guard-rebalance-i-0123456789abcdef0/${step}/${n}`,
  step,
  workflowId: 'spot-guard-rebalance-i-0123456789abcdef0',
  at: '2026-12-03T04:00:00.000Z',
  nodeName: 'ip-10-0-0-1',
  instanceId: 'i-0123456789abcdef0',
  group: 'spot',
  message: `spot capacity unavailable (${n})`,
  facts: { kind: 'on-demand', reason: 'capacity problem: InsufficientInstanceCapacity' },
});

/** A server answering each request with the next status of `statuses` (the last one from then on). */
async function endpoint(statuses: number[]): Promise<{ server: Server; url: URL; bodies: unknown[] }> {
  const bodies: unknown[] = [];
  let served = 0;
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (c: Buffer) => chunks.push(c));
    request.on('end', () => {
      const status = statuses[Math.min(served++, statuses.length - 1)] ?? 204;
      if (status < 300) bodies.push(JSON.parse(Buffer.concat(chunks).toString()));
      response.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/services/SECRET?token=hidden`), bodies };
}

/** postWebhook's attempts, each in an activity context of its attempt number, with the log lines and counts it made. */
function poster(config: WebhookConfig | undefined) {
  const lines: string[] = [];
  const results: string[] = [];
  const { postWebhook } = createWebhookActivities(config, { webhookMessages: ({ result }) => results.push(result) });
  const logger = new DefaultLogger('WARN', (entry) => lines.push(`${entry.message} ${JSON.stringify(entry.meta ?? {})}`));
  type Outcome = Awaited<ReturnType<typeof postWebhook>>;
  const attempt = (message: WebhookMessage, attempt: number, firstScheduledAt = Date.now()): Promise<Outcome> =>
    new MockActivityEnvironment({ attempt, scheduledTimestampMs: firstScheduledAt }, { logger }).run<[WebhookMessage], Outcome, typeof postWebhook>(postWebhook, message);
  return { attempt, lines, results };
}

const json = (n: number): WebhookMessage => ({ id: webhookMessageId(announcement(n)), body: JSON.stringify({ n }) });

describe('webhook', function () {
  it('settings: off without a URL; the URL from a file; errors name the setting and never the URL', function () {
    assert.deepEqual(loadWebhookConfig({}), { ok: true });
    const dir = mkdtempSync(join(tmpdir(), 'spot-guard-webhook-'));
    writeFileSync(join(dir, 'url'), 'https://hooks.example.com/services/SECRET\n');
    const fromFile = loadWebhookConfig({ SPOT_GUARD_WEBHOOK_URL_FILE: join(dir, 'url'), SPOT_GUARD_WEBHOOK_EVENTS: 'held, drained', SPOT_GUARD_WEBHOOK_FORMAT: 'slack' });
    assert.ok(fromFile.ok && fromFile.config);
    assert.equal(fromFile.config.url.pathname, '/services/SECRET');
    assert.deepEqual([...fromFile.config.steps], ['held', 'drained']);
    assert.equal(fromFile.config.format, 'slack');
    const bad = loadWebhookConfig({ SPOT_GUARD_WEBHOOK_URL: 'ftp://SECRET@example.com/x', SPOT_GUARD_WEBHOOK_EVENTS: 'held,exploded', SPOT_GUARD_WEBHOOK_FORMAT: 'xml' });
    assert.ok(!bad.ok);
    assert.equal(bad.errors.length, 3);
    assert.ok(bad.errors.every((e) => !e.includes('SECRET')), bad.errors.join('\n'));
    assert.match(bad.errors.join('\n'), /"exploded"/);
    const notUrl = loadWebhookConfig({ SPOT_GUARD_WEBHOOK_URL: 'SECRET not a url' });
    assert.ok(!notUrl.ok && notUrl.errors.every((e) => !e.includes('SECRET')));
    assert.ok(!loadWebhookConfig({ SPOT_GUARD_WEBHOOK_URL: 'https://a', SPOT_GUARD_WEBHOOK_URL_FILE: '/x' }).ok, 'both set: refused');
  });

  it('a failing endpoint: each attempt throws for the workflow to back off, one log line for the message, delivered once it answers; no URL logged', async function () {
    const { server, url, bodies } = await endpoint([503, 503, 204]);
    try {
      const { attempt, lines, results } = poster({ url, steps: new Set(['on-demand-fallback']), format: 'json' });
      await assert.rejects(attempt(json(1), 1), /delivery failed \(HTTP 503\)/);
      await assert.rejects(attempt(json(1), 2), /delivery failed \(HTTP 503\)/);
      assert.deepEqual(await attempt(json(1), 3), { delivered: true });
      assert.deepEqual(bodies, [{ n: 1 }]);
      assert.deepEqual(results, ['retried', 'retried', 'delivered']);
      assert.equal(lines.filter((l) => /delivery failed/.test(l)).length, 1, lines.join('\n'));
      assert.match(lines.join('\n'), /delivered after 3 attempts/);
      assert.ok(lines.every((l) => !l.includes('SECRET') && !l.includes('hidden') && !l.includes('127.0.0.1')), lines.join('\n'));
    } finally {
      server.close();
    }
  });

  it('dropped, not retried: a refusal for good (HTTP 400), a message failing for an hour, and a worker without the webhook', async function () {
    const { server, url } = await endpoint([400, 503]);
    try {
      const { attempt, results } = poster({ url, steps: new Set(['on-demand-fallback']), format: 'json' });
      const refused = await attempt(json(1), 1);
      assert.deepEqual(refused, { delivered: false, reason: 'HTTP 400 after 1 attempt(s)' });
      const old = await attempt(json(2), 40, Date.now() - 3_590_000);
      assert.equal(old.delivered, false);
      assert.deepEqual(results, ['dropped', 'dropped']);
      const off = await poster(undefined).attempt(json(3), 1);
      assert.equal(off.delivered, false);
      assert.match(off.delivered ? '' : off.reason, /SPOT_GUARD_WEBHOOK_URL/);
    } finally {
      server.close();
    }
  });

  it('the hand-off: only the chosen steps, signalled to the one webhook workflow under a stable id; Slack bodies carry text', async function () {
    const signalled: { workflowId: string; taskQueue: string; message: WebhookMessage }[] = [];
    const client = {
      workflow: {
        signalWithStart: async (_type: string, options: { workflowId: string; taskQueue: string; signalArgs: [WebhookMessage] }) => {
          signalled.push({ workflowId: options.workflowId, taskQueue: options.taskQueue, message: options.signalArgs[0] });
        },
      },
    } as unknown as Client;
    const queue = webhookQueue(client, 'spot-guard-groups', { url: new URL('https://hooks.example.com/SECRET'), steps: new Set(['held']), format: 'slack' });
    await queue(announcement(1, 'drained'));
    await queue(announcement(2, 'held'));
    await queue(announcement(2, 'held'));
    assert.equal(signalled.length, 2, 'not a chosen step: nothing sent');
    assert.deepEqual(signalled.map((s) => [s.workflowId, s.taskQueue]), [['spot-guard-webhook-spot-guard-groups', 'spot-guard-groups'], ['spot-guard-webhook-spot-guard-groups', 'spot-guard-groups']]);
    assert.equal(signalled[0]?.message.id, signalled[1]?.message.id, 'the same step, the same id: the workflow takes it once');
    assert.deepEqual(JSON.parse(signalled[0]?.message.body ?? '{}'), slackMessage(announcement(2, 'held')));
    assert.match(slackMessage(announcement(2, 'held')).text as string, /^:warning: \*Spot Guard: HeldForCapacity\* \(node `ip-10-0-0-1`, instance `i-0123456789abcdef0`, group `spot`\)\n/);
    assert.ok(signalled.every((s) => !s.message.body.includes('SECRET')), 'the URL never goes into a history');
  });
});
