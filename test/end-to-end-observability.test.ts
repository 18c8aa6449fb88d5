// What operators see of a flow without opening a workflow, end to end on the real stack (the worker process, the
// Temporal dev server, moto, the Kubernetes stack): the Kubernetes Events on the warned node and on the fallback's node
// read back from the kube-apiserver, and the domain metrics read from the worker's /metrics, values included. A
// restarted worker replays the histories and adds nothing.
import assert from 'node:assert/strict';
import type { CoreV1Event } from '@kubernetes/client-node';
import { requestRebalance } from '../signaler/workflow-requests.js';
import { monitorStatusQuery } from '../workflows/monitor/api.js';
import { rebalanceStatusQuery } from '../workflows/rebalance/api.js';
import { monitorWorkflowId, rebalanceWorkflowId } from '../workflows/shared/ids.js';
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

describe('end to end: Kubernetes Events and domain metrics of a flow', function () {
  this.timeout(300_000);
  let e2e: EndToEnd;
  let metricsAddress: string;
  const metrics = async (): Promise<string> => (await fetch(`http://${metricsAddress}/metrics`)).text();
  let env: Record<string, string>;

  before(async function () {
    e2e = await new EndToEnd().start();
    metricsAddress = `127.0.0.1:${await freePort()}`;
    env = { SPOT_GUARD_METRICS_ADDRESS: metricsAddress };
    await e2e.startWorker(env);
  });
  after(async function () {
    await e2e?.stop();
  });
  afterEach(function () {
    if (this.currentTest?.state === 'passed') scenarioPassed('end-to-end-observability', this.currentTest.title);
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
    fallback = { atRisk, nodeName, fallbackNode, fallbackId };
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
    const before = { warned: await eventsOn(e2e, fallback.nodeName), onFallback: await eventsOn(e2e, fallback.fallbackNode) };
    await e2e.stopWorker();
    await e2e.startWorker(env);
    // A query on a closed workflow replays its whole history on this new worker; the monitor replays as it goes on.
    const status = await e2e.client.workflow.getHandle(rebalanceWorkflowId(fallback.atRisk)).query(rebalanceStatusQuery);
    assert.equal(status.phase, 'done');
    const monitor = await e2e.client.workflow.getHandle(monitorWorkflowId(SPOT, ON_DEMAND)).query(monitorStatusQuery);
    assert.ok(monitor.events.some((e) => e.onDemandInstanceId === fallback?.fallbackId));
    const text = await metrics();
    assert.match(text, /spot_guard_worker_resident_memory_bytes \d+/, 'the new worker serves its metrics');
    for (const metric of ['spot_guard_notices_received_total', 'spot_guard_notices_total', 'spot_guard_capacity_errors_total', 'spot_guard_reverts_total', 'spot_guard_kubernetes_events_total', 'spot_guard_replacement_seconds_count']) {
      assert.equal(valueOf(text, metric), 0, `${metric} after the replays`);
    }
    assert.deepEqual(await eventsOn(e2e, fallback.nodeName), before.warned, 'the warned node\'s Events unchanged');
    assert.deepEqual(await eventsOn(e2e, fallback.fallbackNode), before.onFallback, 'the fallback node\'s Events unchanged');
  });
});
