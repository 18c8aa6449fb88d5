// announceStep against a real kube-apiserver, as the worker's service account of deploy/base/rbac.yaml: the Event on
// each node it names, with its stable reason; a retried announcement (the same key) writes no second Event and counts
// nothing twice; an API server that refuses or is gone costs the Event, never the flow (no throw).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, KubeConfig, type KubernetesObject, KubernetesObjectApi, loadAllYaml } from '@kubernetes/client-node';
import type { MetricMeter } from '@temporalio/common';
import { noopMetricMeter } from '@temporalio/common';
import { createAnnounceActivities, eventName } from '../activities/announce.js';
import { webhookMessageId } from '../activities/webhook.js';
import { DomainMetrics } from '../activities/domain-metrics.js';
import { kubernetesStatus } from '../activities/errors.js';
import type { StepAnnouncement } from '../workflows/shared/announcements.js';
import { KubernetesStack } from '../scripts/peers/kubernetes-stack.js';
import { activityEnvironment } from './helpers/temporal.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/** A meter that keeps every counter addition, `name{tags}` → total. */
function countingMeter(): { meter: MetricMeter; totals: Map<string, number> } {
  const totals = new Map<string, number>();
  const meter: MetricMeter = {
    createHistogram: (...args) => noopMetricMeter.createHistogram(...args),
    createGauge: (...args) => noopMetricMeter.createGauge(...args),
    createCounter: (name: string) => ({
      ...noopMetricMeter.createCounter(name),
      add: (value: number, tags: Record<string, unknown> = {}) => {
        const key = `${name}${JSON.stringify(tags)}`;
        totals.set(key, (totals.get(key) ?? 0) + value);
      },
    }),
    withTags: () => meter,
  };
  return { meter, totals };
}

describe('announceStep against a real API server, as the worker\'s service account', function () {
  this.timeout(120_000);
  let stack: KubernetesStack;
  let asWorker: CoreV1Api;

  before(async function () {
    stack = await new KubernetesStack().start();
    const admin = KubernetesObjectApi.makeApiClient(stack.kubeConfig());
    for (const object of loadAllYaml(readFileSync(join(repoRoot, 'deploy', 'base', 'rbac.yaml'), 'utf8')) as KubernetesObject[]) await admin.create(object);
    asWorker = (await stack.kubeConfigAs('spot-guard', 'spot-guard-worker')).makeApiClient(CoreV1Api);
  });
  after(async () => stack?.stop());

  const announcement = (key: string): StepAnnouncement => ({
    key,
    step: 'replacement-ready',
    workflowId: 'spot-guard-rebalance-i-0123456789abcdef0',
    at: new Date().toISOString(),
    nodeName: 'ip-warned',
    otherNodeName: 'ip-fallback',
    instanceId: 'i-0123456789abcdef0',
    group: 'spot',
    message: 'on-demand replacement i-0fedcba9876543210 (node ip-fallback) is ready',
    facts: { kind: 'on-demand', outcome: 'on-demand', seconds: 42 },
  });

  async function eventsOn(node: string) {
    return (await stack.coreApi().listNamespacedEvent({ namespace: 'default', fieldSelector: `involvedObject.name=${node},source=spot-guard` })).items;
  }

  it('writes one Event per node named, and a retried announcement adds no Event and no count', async function () {
    const { meter, totals } = countingMeter();
    const sent: string[] = [];
    const webhook = async (a: StepAnnouncement): Promise<void> => {
      sent.push(webhookMessageId(a));
    };
    const { announceStep } = createAnnounceActivities({ events: asWorker, metrics: new DomainMetrics(meter), webhook });
    const key = 'spot-guard-rebalance-i-0123456789abcdef0/replacement-ready';
    await activityEnvironment(1).run(announceStep, announcement(key));
    await activityEnvironment(2).run(announceStep, announcement(key)); // the retry of an attempt that timed out
    for (const node of ['ip-warned', 'ip-fallback']) {
      const events = await eventsOn(node);
      assert.equal(events.length, 1, `one Event on ${node}`);
      assert.equal(events[0]?.reason, 'ReplacementReady');
      assert.equal(events[0]?.type, 'Normal');
      assert.equal(events[0]?.count, 1);
      assert.equal(events[0]?.metadata?.name, eventName(key, node));
      assert.equal(events[0]?.involvedObject.kind, 'Node');
    }
    assert.equal(totals.get('spot_guard_notices_total{"notice":"rebalance-recommendation","outcome":"on-demand","group":"spot"}'), 1);
    assert.equal(totals.get('spot_guard_kubernetes_events_total{"result":"created"}'), 2);
    assert.equal(totals.get('spot_guard_kubernetes_events_total{"result":"duplicate"}'), 2);
    assert.equal(new Set(sent).size, 1, 'handed to the webhook under one id, which its workflow takes once');
  });

  it('a webhook message Temporal does not take fails the attempt after the Events, so the retry sends it again', async function () {
    const { meter, totals } = countingMeter();
    let refusals = 1;
    const sent: string[] = [];
    const webhook = async (a: StepAnnouncement): Promise<void> => {
      if (refusals-- > 0) throw new Error('Temporal unavailable');
      sent.push(webhookMessageId(a));
    };
    const { announceStep } = createAnnounceActivities({ events: asWorker, metrics: new DomainMetrics(meter), webhook });
    const key = 'spot-guard-rebalance-i-0123456789abcdef0/replacement-ready/webhook';
    await assert.rejects(activityEnvironment(1).run(announceStep, announcement(key)), /Temporal unavailable/);
    assert.equal((await eventsOn('ip-warned')).filter((e) => e.metadata?.name === eventName(key, 'ip-warned')).length, 1, 'the Event written all the same');
    await activityEnvironment(2).run(announceStep, announcement(key));
    assert.equal(sent.length, 1, 'sent by the retry');
    assert.equal(totals.get('spot_guard_notices_total{"notice":"rebalance-recommendation","outcome":"on-demand","group":"spot"}'), 1, 'counted once');
  });

  it('may create Events in `default` only, and never patch, update or delete them', async function () {
    const event = (namespace: string) => ({ metadata: { name: `x.${namespace}`, namespace }, involvedObject: { kind: 'Node', name: 'x' }, reason: 'X', message: 'x' });
    const outcome = (call: Promise<unknown>) => call.then(() => 'allowed', (error: unknown) => kubernetesStatus(error));
    assert.equal(await outcome(asWorker.createNamespacedEvent({ namespace: 'default', body: event('default') })), 'allowed');
    assert.equal(await outcome(asWorker.createNamespacedEvent({ namespace: 'spot-guard', body: event('spot-guard') })), 403);
    assert.equal(await outcome(asWorker.patchNamespacedEvent({ namespace: 'default', name: 'x.default', body: { message: 'y' } })), 403);
    assert.equal(await outcome(asWorker.deleteNamespacedEvent({ namespace: 'default', name: 'x.default' })), 403);
    assert.equal(await outcome(asWorker.listNamespacedEvent({ namespace: 'default' })), 403);
  });

  it('an API server that cannot be reached costs the Event, not the flow: the announcement returns, counted as failed', async function () {
    const { meter, totals } = countingMeter();
    const gone = new KubeConfig();
    gone.loadFromOptions({
      clusters: [{ name: 'gone', server: 'https://127.0.0.1:1', skipTLSVerify: true }],
      users: [{ name: 'u', token: 't' }],
      contexts: [{ name: 'c', cluster: 'gone', user: 'u' }],
      currentContext: 'c',
    });
    const { announceStep } = createAnnounceActivities({ events: gone.makeApiClient(CoreV1Api), metrics: new DomainMetrics(meter) });
    const started = Date.now();
    await activityEnvironment().run(announceStep, announcement('unreachable/replacement-ready'));
    assert.ok(Date.now() - started < 6_000, 'within the write timeout');
    assert.equal(totals.get('spot_guard_kubernetes_events_total{"result":"failed"}'), 2);
    assert.equal(totals.get('spot_guard_notices_total{"notice":"rebalance-recommendation","outcome":"on-demand","group":"spot"}'), 1, 'counted all the same');
  });
});
