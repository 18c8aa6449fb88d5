// What operators see of a flow without opening a workflow, end to end on the real stack (the worker process, the
// Temporal dev server, moto, the Kubernetes stack): the Kubernetes Events on the warned node and on the fallback's node
// read back from the kube-apiserver, the domain metrics read from the worker's /metrics, values included, and the
// webhook's messages received by a local HTTP server, one that is down for 30 s too. A restarted worker replays the
// histories and adds nothing.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { CoreV1Event } from '@kubernetes/client-node';
import { reportInterruption, requestRebalance } from '../signaler/workflow-requests.js';
import { monitorStatusQuery } from '../workflows/monitor/api.js';
import { drainNowSignal, rebalanceStatusQuery } from '../workflows/rebalance/api.js';
import { capacityStatusQuery } from '../workflows/capacity/api.js';
import { capacityWorkflowId, monitorWorkflowId, rebalanceWorkflowId } from '../workflows/shared/ids.js';
import type { rebalanceWorkflow } from '../workflows/rebalance/workflow.js';
import { EndToEnd, ON_DEMAND, SPOT, TASK_QUEUE } from '../scripts/peers/end-to-end.js';
import { samplesOf } from '../scripts/peers/prometheus.js';
import { freePort, until } from '../scripts/peers/wait.js';
import { scenarioPassed } from './helpers/scenario-count.js';

/** The Events Spot Guard wrote on a node, oldest first, as `kubectl describe node` lists them. */
async function eventsOn(e2e: EndToEnd, nodeName: string): Promise<CoreV1Event[]> {
  const list = await e2e.core.listNamespacedEvent({ namespace: 'default', fieldSelector: `involvedObject.name=${nodeName},source=spot-guard` });
  return list.items.sort((a, b) => String(a.firstTimestamp).localeCompare(String(b.firstTimestamp)));
}

const reasonsOf = (events: CoreV1Event[]): string[] => events.map((e) => e.reason ?? '');

/** One metric's value for exactly these labels (the SDK adds its own; those are ignored), 0 when absent. */
function valueOf(text: string, metric: string, labels: Record<string, string> = {}): number {
  return samplesOf(text, metric)
    .filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

/** A chat's webhook endpoint: every JSON body it received, in order; it can be taken down and brought back. */
class WebhookEndpoint {
  readonly bodies: Record<string, unknown>[] = [];
  private server?: Server;
  constructor(readonly port: number) {}

  async up(): Promise<void> {
    this.server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        this.bodies.push(JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>);
        response.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => this.server?.listen(this.port, '127.0.0.1', resolve));
  }

  async down(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }

  stepsOf(workflowId: string): string[] {
    return this.bodies.filter((b) => b.workflowId === workflowId).map((b) => String(b.step));
  }
}

/** The webhook URL's secret parts: a chat's token is in its path and query, and must never reach the log. */
const WEBHOOK_SECRET = 'T0KEN-in-path';
const WEBHOOK_QUERY_SECRET = 'sig-in-query';

describe('end to end: Kubernetes Events, domain metrics and webhooks of a flow', function () {
  this.timeout(300_000);
  let e2e: EndToEnd;
  let metricsAddress: string;
  const metrics = async (): Promise<string> => (await fetch(`http://${metricsAddress}/metrics`)).text();
  let env: Record<string, string>;
  let endpoint: WebhookEndpoint;

  before(async function () {
    e2e = await new EndToEnd().start();
    metricsAddress = `127.0.0.1:${await freePort()}`;
    endpoint = new WebhookEndpoint(await freePort());
    await endpoint.up();
    env = {
      SPOT_GUARD_METRICS_ADDRESS: metricsAddress,
      SPOT_GUARD_WEBHOOK_URL: `http://127.0.0.1:${endpoint.port}/hooks/${WEBHOOK_SECRET}?sig=${WEBHOOK_QUERY_SECRET}`,
      SPOT_GUARD_WEBHOOK_EVENTS: 'all',
    };
    await e2e.startWorker(env);
  });
  after(async function () {
    await endpoint?.down();
    await e2e?.stop();
  });
  afterEach(function () {
    if (this.currentTest?.state === 'passed') scenarioPassed('end-to-end', this.currentTest.title);
    if (this.currentTest?.state === 'failed') console.error(`worker output:\n${e2e.workerLog().slice(-4000)}`);
  });

  let fallback: { atRisk: string; nodeName: string; fallbackNode: string; fallbackId: string } | undefined;

  it('a fallback to on-demand: each step an Event on the warned node, the replacement on the fallback node, the metrics counted', async function () {
    const { atRisk, nodeName } = await e2e.spotNodeWithPod();
    await e2e.aws.capacityError(SPOT);
    await requestRebalance(e2e.client, TASK_QUEUE, { instanceId: atRisk, nodeName });
    const handle = e2e.client.workflow.getHandle<typeof rebalanceWorkflow>(rebalanceWorkflowId(atRisk));
    const result = await handle.result();
    assert.equal(result.replacement, 'on-demand');
    const fallbackId = result.replacementInstanceId as string;
    const fallbackNode = (await handle.query(rebalanceStatusQuery)).replacementNodeName as string;
    assert.equal(fallbackNode, EndToEnd.nodeName(fallbackId));

    const warned = await eventsOn(e2e, nodeName);
    assert.deepEqual(reasonsOf(warned).sort(), ['Drained', 'OnDemandFallback', 'RebalanceNotice', 'ReplacementReady', 'ReplacementRequested', 'ReplacementRequested', 'Tainted'].sort());
    const fallbackReason = warned.find((e) => e.reason === 'OnDemandFallback');
    assert.match(fallbackReason?.message ?? '', /We currently do not have sufficient m5.large capacity/);
    const ready = warned.find((e) => e.reason === 'ReplacementReady');
    assert.match(ready?.message ?? '', new RegExp(`on-demand replacement ${fallbackId} \\(node ${fallbackNode}\\)`));
    assert.match(warned.find((e) => e.reason === 'Drained')?.message ?? '', /1 pod\(s\) evicted, 0 left/);
    for (const event of warned) {
      assert.equal(event.involvedObject.kind, 'Node');
      assert.equal(event.count, 1, `${event.reason} written once`);
    }
    assert.deepEqual(reasonsOf(await eventsOn(e2e, fallbackNode)), ['ReplacementReady']);

    const text = await metrics();
    const ours = text.split('\n').filter((line) => line.startsWith('spot_guard_') && !line.includes('_bucket')).join('\n');
    assert.equal(valueOf(text, 'spot_guard_notices_received_total', { notice: 'rebalance-recommendation', group: SPOT }), 1, ours);
    assert.equal(valueOf(text, 'spot_guard_notices_total', { outcome: 'on-demand', group: SPOT }), 1, ours);
    assert.equal(valueOf(text, 'spot_guard_capacity_errors_total', { group: SPOT, code: 'InsufficientInstanceCapacity' }), 1, ours);
    assert.equal(valueOf(text, 'spot_guard_on_demand_fallbacks_total', { group: SPOT }), 1, ours);
    assert.equal(valueOf(text, 'spot_guard_pods_evicted_total'), 1, ours);
    assert.equal(valueOf(text, 'spot_guard_replacement_seconds_count', { kind: 'on-demand' }), 1, ours);
    assert.ok(valueOf(text, 'spot_guard_replacement_seconds_sum', { kind: 'on-demand' }) >= 1, 'an on-demand replacement takes seconds');
    assert.equal(valueOf(text, 'spot_guard_taint_lag_seconds_count'), 1, ours);
    assert.equal(valueOf(text, 'spot_guard_drain_seconds_count'), 1, ours);
    assert.equal(valueOf(text, 'spot_guard_kubernetes_events_total', { result: 'created' }), 8, '7 on the warned node, 1 on the fallback node');
    // The capacity workflows' own, from workflow code through the SDK's replay-aware meter: their polls and queues.
    const polls = (group: string) => valueOf(text, 'spot_guard_capacity_polls_total', { group });
    const spotPolls = (await e2e.client.workflow.getHandle(capacityWorkflowId(SPOT)).query(capacityStatusQuery)).waiting;
    assert.ok(polls(SPOT) >= 1 && polls(ON_DEMAND) >= 1, `each group polled for its waiter: ${polls(SPOT)}, ${polls(ON_DEMAND)} (${JSON.stringify(spotPolls)})`);
    assert.equal(samplesOf(text, 'spot_guard_capacity_queue').filter((s) => s.labels.group === SPOT).length, 1, 'the spot group\'s queue shown');
    assert.equal(valueOf(text, 'spot_guard_capacity_waiters', { group: SPOT }), 0, 'nobody waits any more');
    fallback = { atRisk, nodeName, fallbackNode, fallbackId };

    // The webhook: one JSON message per step, in order, each with what happened and where.
    const workflowId = rebalanceWorkflowId(atRisk);
    const steps = ['notice-received', 'replacement-requested', 'on-demand-fallback', 'replacement-requested', 'replacement-ready', 'tainted', 'drained'];
    await until('the webhook messages of the flow', async () => endpoint.stepsOf(workflowId).length >= steps.length, 30_000);
    assert.deepEqual(endpoint.stepsOf(workflowId).slice().sort(), steps.slice().sort());
    const message = endpoint.bodies.find((b) => b.workflowId === workflowId && b.step === 'on-demand-fallback');
    assert.equal(message?.reason, 'OnDemandFallback');
    assert.equal(message?.node, nodeName);
    assert.equal(message?.instanceId, atRisk);
    assert.equal(message?.group, SPOT);
    assert.match(String((message?.details as { reason?: string }).reason), /sufficient m5.large capacity/);
    const readyMessage = endpoint.bodies.find((b) => b.workflowId === workflowId && b.step === 'replacement-ready');
    const details = readyMessage?.details as { seconds: number };
    assert.deepEqual(details, { notice: 'rebalance-recommendation', kind: 'on-demand', outcome: 'on-demand', replacementInstanceId: fallbackId, replacementNodeName: fallbackNode, seconds: details.seconds, late: false });
    assert.equal(new Set(endpoint.bodies.map((b) => b.id)).size, endpoint.bodies.length, 'each message its own id');
  });

  it('revert to spot: an Event on the fallback node, its instance-seconds and the seconds to revert counted', async function () {
    assert.ok(fallback, 'the fallback scenario ran first');
    await e2e.aws.restore(SPOT);
    const monitor = e2e.client.workflow.getHandle(monitorWorkflowId(SPOT, ON_DEMAND));
    await until('the monitor to remove the fallback', async () => (await monitor.query(monitorStatusQuery)).events.some((e) => e.onDemandInstanceId === fallback?.fallbackId && e.state === 'removed'), 150_000);
    const onFallback = await eventsOn(e2e, fallback.fallbackNode);
    assert.deepEqual(reasonsOf(onFallback), ['ReplacementReady', 'RevertedToSpot']);
    assert.match(onFallback[1]?.message ?? '', new RegExp(`on-demand fallback ${fallback.fallbackId} \\(${fallback.fallbackNode}\\) removed after \\d+ s`));
    const text = await metrics();
    assert.equal(valueOf(text, 'spot_guard_reverts_total', { group: ON_DEMAND }), 1);
    const seconds = valueOf(text, 'spot_guard_on_demand_fallback_instance_seconds_total', { group: ON_DEMAND });
    assert.ok(seconds >= 20 && seconds < 600, `the fallback ran for the stability window at least, not for ever: ${seconds} s`);
    assert.equal(valueOf(text, 'spot_guard_fallback_to_revert_seconds_count', { group: ON_DEMAND }), 1);
    assert.equal(valueOf(text, 'spot_guard_fallback_to_revert_seconds_sum', { group: ON_DEMAND }), seconds);
  });

  it('a restarted worker replays the histories and announces nothing again: no new Event, no count', async function () {
    assert.ok(fallback, 'the fallback scenario ran first');
    const before = { warned: await eventsOn(e2e, fallback.nodeName), onFallback: await eventsOn(e2e, fallback.fallbackNode), messages: endpoint.bodies.length };
    await e2e.stopWorker();
    await e2e.startWorker(env);
    // A query on a closed workflow replays its whole history on this new worker; the monitor replays as it goes on.
    const status = await e2e.client.workflow.getHandle(rebalanceWorkflowId(fallback.atRisk)).query(rebalanceStatusQuery);
    assert.equal(status.phase, 'done');
    const monitor = await e2e.client.workflow.getHandle(monitorWorkflowId(SPOT, ON_DEMAND)).query(monitorStatusQuery);
    assert.ok(monitor.events.some((e) => e.onDemandInstanceId === fallback?.fallbackId));
    for (const group of [SPOT, ON_DEMAND]) await e2e.client.workflow.getHandle(capacityWorkflowId(group)).query(capacityStatusQuery);
    const text = await metrics();
    assert.match(text, /spot_guard_worker_resident_memory_bytes \d+/, 'the new worker serves its metrics');
    for (const metric of ['spot_guard_notices_received_total', 'spot_guard_notices_total', 'spot_guard_capacity_errors_total', 'spot_guard_reverts_total', 'spot_guard_kubernetes_events_total', 'spot_guard_replacement_seconds_count', 'spot_guard_capacity_polls_total']) {
      assert.equal(valueOf(text, metric), 0, `${metric} after the replays`);
    }
    assert.deepEqual(await eventsOn(e2e, fallback.nodeName), before.warned, 'the warned node\'s Events unchanged');
    assert.deepEqual(await eventsOn(e2e, fallback.fallbackNode), before.onFallback, 'the fallback node\'s Events unchanged');
    assert.equal(endpoint.bodies.length, before.messages, 'no webhook message sent again');
  });

  it('a webhook endpoint down for 30 s and the worker killed meanwhile: the flow goes on, the messages arrive once it is back, and the URL is never logged', async function () {
    await endpoint.down();
    const downAt = Date.now();
    const { atRisk, nodeName } = await e2e.spotNodeWithPod();
    await requestRebalance(e2e.client, TASK_QUEUE, { instanceId: atRisk, nodeName });
    const result = await e2e.client.workflow.getHandle<typeof rebalanceWorkflow>(rebalanceWorkflowId(atRisk)).result();
    assert.equal(result.instanceFate, 'terminated');
    const flowSeconds = (Date.now() - downAt) / 1000;
    assert.ok(flowSeconds < 30, `the flow ended while the endpoint was down (${flowSeconds} s)`);
    const workflowId = rebalanceWorkflowId(atRisk);
    assert.deepEqual(endpoint.stepsOf(workflowId), [], 'nothing received while down');
    await until('a failed delivery logged', async () => /webhook: delivery failed \(ECONNREFUSED\)/.test(e2e.workerLog()), 20_000);
    const firstLog = e2e.workerLog();
    // The messages wait in the webhook workflow, not in the worker: a killed worker loses none of them.
    e2e.killWorker();
    await e2e.startWorker(env);

    await new Promise((resolve) => setTimeout(resolve, Math.max(0, downAt + 30_000 - Date.now())));
    await endpoint.up();
    const steps = ['notice-received', 'replacement-requested', 'replacement-ready', 'tainted', 'drained'];
    await until('the queued messages delivered', async () => endpoint.stepsOf(workflowId).length >= steps.length, 90_000);
    assert.deepEqual(endpoint.stepsOf(workflowId), steps, 'each once, in order');
    const text = await metrics();
    assert.ok(valueOf(text, 'spot_guard_webhook_messages_total', { result: 'retried' }) >= 1, 'retried while down');
    assert.ok(valueOf(text, 'spot_guard_webhook_messages_total', { result: 'delivered' }) >= steps.length);
    assert.equal(valueOf(text, 'spot_guard_webhook_messages_total', { result: 'dropped' }), 0);
    const log = `${firstLog}\n${e2e.workerLog()}`;
    assert.match(log, /webhook on: json messages for notice-received/);
    for (const secret of [WEBHOOK_SECRET, WEBHOOK_QUERY_SECRET, `127.0.0.1:${endpoint.port}`]) assert.ok(!log.includes(secret), `the log never shows ${secret}`);
  });

  it('an interruption notice during the run: a SpotInterruption Event when it comes, counted as a notice, the outcome under its kind', async function () {
    const { atRisk, nodeName } = await e2e.spotNodeWithPod();
    await e2e.aws.delay(SPOT, 20);
    await requestRebalance(e2e.client, TASK_QUEUE, { instanceId: atRisk, nodeName });
    const handle = e2e.client.workflow.getHandle<typeof rebalanceWorkflow>(rebalanceWorkflowId(atRisk));
    await until('waiting for spot', async () => (await handle.query(rebalanceStatusQuery)).capacityPhase === 'waiting-for-spot');
    await reportInterruption(e2e.client, TASK_QUEUE, { instanceId: atRisk, nodeName }, { action: 'terminate', time: new Date(Date.now() + 120_000).toISOString() });
    assert.equal((await handle.result()).replacement, 'spot');
    const events = await eventsOn(e2e, nodeName);
    const interruption = events.find((e) => e.reason === 'SpotInterruption');
    assert.match(interruption?.message ?? '', /spot interruption notice for i-\w+: terminate at /);
    assert.ok(Date.parse(String(interruption?.firstTimestamp)) < Date.parse(String(events.find((e) => e.reason === 'ReplacementReady')?.firstTimestamp)), 'announced when it came, before the replacement');
    const text = await metrics();
    assert.equal(valueOf(text, 'spot_guard_notices_received_total', { notice: 'spot-interruption' }), 1);
    assert.equal(valueOf(text, 'spot_guard_notices_total', { notice: 'spot-interruption', outcome: 'spot' }), 1);
    await until('its webhook message', async () => endpoint.stepsOf(rebalanceWorkflowId(atRisk)).includes('interruption-received'), 30_000);
  });

  it('no capacity anywhere: NoReplacementCapacity and HeldForCapacity Events, the node counted as held until an operator drains it', async function () {
    const { atRisk, nodeName } = await e2e.spotNodeWithPod();
    await e2e.aws.capacityError(SPOT);
    await e2e.aws.capacityError(ON_DEMAND);
    await requestRebalance(e2e.client, TASK_QUEUE, { instanceId: atRisk, nodeName });
    const handle = e2e.client.workflow.getHandle<typeof rebalanceWorkflow>(rebalanceWorkflowId(atRisk));
    await until('holding', async () => (await handle.query(rebalanceStatusQuery)).phase === 'holding');
    await until('the held node counted', async () => valueOf(await metrics(), 'spot_guard_nodes_held', { group: SPOT }) === 1);
    const held = await eventsOn(e2e, nodeName);
    assert.equal(held.find((e) => e.reason === 'HeldForCapacity')?.type, 'Warning');
    assert.match(held.find((e) => e.reason === 'NoReplacementCapacity')?.message ?? '', /capacity problem/);
    const text = await metrics();
    assert.equal(valueOf(text, 'spot_guard_notices_total', { outcome: 'capacity-unavailable', group: SPOT }), 1);
    assert.equal(valueOf(text, 'spot_guard_capacity_errors_total', { group: ON_DEMAND }), 1, 'the on-demand group\'s error, under its own name');

    await handle.signal(drainNowSignal, { reason: 'observability test' });
    assert.equal((await handle.result()).drained, true);
    assert.equal(valueOf(await metrics(), 'spot_guard_nodes_held', { group: SPOT }), 0, 'no longer held once drained');
    assert.ok((await eventsOn(e2e, nodeName)).some((e) => e.reason === 'Drained'));
  });
});

