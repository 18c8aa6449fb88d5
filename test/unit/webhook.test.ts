// The webhook on its own, against a local HTTP server: its settings (errors never show the URL), the JSON and Slack
// bodies, retries with backoff until delivered, a refusal that retrying cannot change, the bounded queue, and a log
// that never holds the URL.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StepAnnouncement } from '../../workflows/shared/announcements.js';
import { loadWebhookConfig, type WebhookConfig } from '../../worker/webhook-config.js';
import { slackMessage, WebhookSender } from '../../worker/webhook.js';
import { until } from '../../scripts/peers/wait.js';

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
async function endpoint(statuses: number[]): Promise<{ server: Server; url: string; bodies: unknown[] }> {
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
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/services/SECRET?token=hidden`, bodies };
}

function sender(config: Partial<WebhookConfig> & { url: URL }, options = {}) {
  const lines: string[] = [];
  const results: string[] = [];
  const full: WebhookConfig = { steps: new Set(['on-demand-fallback', 'held']), format: 'json', ...config };
  const webhook = new WebhookSender(full, { webhookMessages: ({ result }) => results.push(result) }, { warn: (line) => lines.push(line) }, { firstRetryMs: 50, maxRetryMs: 200, ...options });
  return { webhook, lines, results };
}

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

  it('retries a failing endpoint with backoff until it answers, in order, and logs no URL', async function () {
    const { server, url, bodies } = await endpoint([503, 503, 204]);
    try {
      const { webhook, lines, results } = sender({ url: new URL(url) });
      webhook.notify(announcement(1));
      webhook.notify(announcement(2));
      webhook.notify(announcement(3, 'drained')); // not a chosen step
      await until('both delivered', async () => bodies.length === 2, 5_000);
      assert.deepEqual(bodies.map((b) => (b as { message: string }).message), ['spot capacity unavailable (1)', 'spot capacity unavailable (2)']);
      assert.deepEqual(results, ['retried', 'retried', 'delivered', 'delivered']);
      assert.match(lines.join('\n'), /delivery failed \(HTTP 503\)/);
      assert.ok(lines.every((l) => !l.includes('SECRET') && !l.includes('hidden') && !l.includes('127.0.0.1')), lines.join('\n'));
    } finally {
      server.close();
    }
  });

  it('drops a message the endpoint refuses for good (HTTP 400) and goes on with the next one; Slack bodies carry text', async function () {
    const { server, url, bodies } = await endpoint([400, 200]);
    try {
      const { webhook, results } = sender({ url: new URL(url), format: 'slack' });
      webhook.notify(announcement(1));
      webhook.notify(announcement(2, 'held'));
      await until('the second delivered', async () => bodies.length === 1, 5_000);
      assert.deepEqual(results, ['dropped', 'delivered']);
      assert.deepEqual(bodies[0], slackMessage(announcement(2, 'held')));
      assert.match((bodies[0] as { text: string }).text, /^:warning: \*Spot Guard: HeldForCapacity\* \(node `ip-10-0-0-1`, instance `i-0123456789abcdef0`, group `spot`\)\n/);
    } finally {
      server.close();
    }
  });

  it('a bounded queue: beyond its limit the oldest is dropped, and notify never waits', async function () {
    const { server, url, bodies } = await endpoint([204]);
    try {
      const { webhook, results } = sender({ url: new URL(url) }, { queueLimit: 2 });
      const started = Date.now();
      for (let n = 1; n <= 5; n++) webhook.notify(announcement(n));
      assert.ok(Date.now() - started < 50, 'notify returns at once');
      await until('the queue delivered', async () => results.filter((r) => r === 'delivered').length >= 2 && bodies.length + results.filter((r) => r === 'dropped').length >= 5, 5_000);
      assert.equal(results.filter((r) => r === 'dropped').length + bodies.length, 5);
      assert.ok(results.filter((r) => r === 'dropped').length >= 2, `dropped beyond the limit: ${results.join(', ')}`);
      await webhook.close(1_000);
    } finally {
      server.close();
    }
  });
});
