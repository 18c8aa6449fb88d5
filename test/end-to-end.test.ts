// End-to-end: the real worker process against the Temporal dev server, moto behind our launcher and a real Kubernetes
// control plane with kwok, driven by the same client call the signaler makes. Real time, default timings.
import assert from 'node:assert/strict';
import type { WorkflowHandle } from '@temporalio/client';
import { reportInterruption, requestRebalance } from '../signaler/workflow-requests.js';
import { monitorStatusQuery } from '../workflows/monitor/api.js';
import { drainNowSignal, type RebalanceStatus, rebalanceStatusQuery } from '../workflows/rebalance/api.js';
import { monitorWorkflowId, rebalanceWorkflowId } from '../workflows/shared/ids.js';
import type { rebalanceWorkflow } from '../workflows/rebalance/workflow.js';
import { until } from '../scripts/peers/wait.js';
import { EndToEnd, ON_DEMAND, SPOT, TASK_QUEUE } from '../scripts/peers/end-to-end.js';
import { scenarioPassed } from './helpers/scenario-count.js';

describe('end to end: real worker, Temporal dev server, moto, Kubernetes', function () {
  this.timeout(240_000);
  let e2e: EndToEnd;

  before(async function () {
    e2e = await new EndToEnd().start();
    await e2e.startWorker();
  });
  after(async function () {
    await e2e?.stop();
  });
  afterEach(function () {
    if (this.currentTest?.state === 'passed') scenarioPassed('end-to-end', this.currentTest.title);
    if (this.currentTest?.state === 'failed') console.error(`worker output:\n${e2e.workerLog().slice(-4000)}`);
  });

  async function scenario(): Promise<{ atRisk: string; nodeName: string; handle: WorkflowHandle<typeof rebalanceWorkflow> }> {
    const [atRisk] = await e2e.groups(2);
    const nodeName = EndToEnd.nodeName(atRisk);
    await until('the at-risk node', async () => (await e2e.core.readNode({ name: nodeName })).metadata?.name === nodeName);
    await e2e.pod(nodeName, `web-${atRisk.slice(-6)}`);
    return { atRisk, nodeName, handle: e2e.client.workflow.getHandle(rebalanceWorkflowId(atRisk)) };
  }

  async function waitForStatus(handle: WorkflowHandle<typeof rebalanceWorkflow>, predicate: (s: RebalanceStatus) => boolean): Promise<RebalanceStatus> {
    let last: RebalanceStatus | undefined;
    await until('the workflow status', async () => predicate((last = await handle.query(rebalanceStatusQuery))));
    return last as RebalanceStatus;
  }

  async function podGone(name: string): Promise<boolean> {
    return e2e.core.readNamespacedPod({ namespace: 'default', name }).then(() => false, () => true);
  }

  it('spot success: a new spot instance, the node tainted and drained, the instance terminated with decrement', async function () {
    const { atRisk, nodeName, handle } = await scenario();
    await requestRebalance(e2e.client, TASK_QUEUE, { instanceId: atRisk, nodeName });
    const result = await handle.result();
    assert.equal(result.replacement, 'spot');
    assert.equal(result.instanceFate, 'terminated');
    const status = await handle.query(rebalanceStatusQuery);
    assert.equal(status.drain?.complete, true);
    assert.deepEqual(await e2e.nodeState(nodeName), { taints: ['spot-instance-terminating=true:NoSchedule'], cordoned: true });
    assert.ok(await podGone(`web-${atRisk.slice(-6)}`), 'the pod was evicted');
    const spot = await e2e.group(SPOT);
    assert.equal(spot.desired, 2, 'back to its original size');
    assert.ok(!spot.instances.some((i) => i.id === atRisk), 'the drained instance is gone');
    assert.ok(spot.instances.some((i) => i.id === result.replacementInstanceId));
    assert.equal((await e2e.group(ON_DEMAND)).desired, 0);
  });

  it('spot capacity failure: falls back to on-demand, and the monitor tracks the fallback', async function () {
    const { atRisk, nodeName, handle } = await scenario();
    await e2e.aws.capacityError(SPOT);
    await requestRebalance(e2e.client, TASK_QUEUE, { instanceId: atRisk, nodeName });
    const result = await handle.result();
    assert.equal(result.replacement, 'on-demand');
    const status = await handle.query(rebalanceStatusQuery);
    assert.match(status.spot.failure ?? '', /capacity problem: Failed: We currently do not have sufficient m5.large capacity/);
    const onDemand = await e2e.group(ON_DEMAND);
    assert.equal(onDemand.desired, 1);
    assert.deepEqual(onDemand.instances.map((i) => i.id), [result.replacementInstanceId]);
    assert.equal((await e2e.group(SPOT)).desired, 2, 'raised to 3 for the replacement, lowered with the drained instance');
    const monitor = await e2e.client.workflow.getHandle(monitorWorkflowId(SPOT, ON_DEMAND)).query(monitorStatusQuery);
    assert.ok(monitor.events.some((e) => e.onDemandInstanceId === result.replacementInstanceId && e.warnedInstanceId === atRisk));
  });

  it('revert to spot: once spot recovers and stays healthy, the on-demand fallback is removed', async function () {
    const { atRisk, nodeName, handle } = await scenario();
    await e2e.aws.capacityError(SPOT);
    await requestRebalance(e2e.client, TASK_QUEUE, { instanceId: atRisk, nodeName });
    const result = await handle.result();
    assert.equal(result.replacement, 'on-demand');
    const fallback = result.replacementInstanceId as string;

    await e2e.aws.restore(SPOT); // spot capacity is back: the group launches the instance it was short of
    const monitor = e2e.client.workflow.getHandle(monitorWorkflowId(SPOT, ON_DEMAND));
    await until('the monitor to remove the fallback', async () => {
      const events = (await monitor.query(monitorStatusQuery)).events;
      return events.some((e) => e.onDemandInstanceId === fallback && e.state === 'removed');
    }, 120_000);
    const onDemand = await e2e.group(ON_DEMAND);
    assert.equal(onDemand.desired, 0, 'terminated with decrement');
    assert.deepEqual(await e2e.nodeState(EndToEnd.nodeName(fallback)), { taints: ['spot-guard.io/scale-down-pending=true:NoSchedule'], cordoned: true });
    assert.ok(!onDemand.instances.some((i) => i.id === fallback && i.state === 'InService'));
    const spot = await e2e.group(SPOT);
    assert.equal(spot.desired, 2);
    assert.equal(spot.instances.filter((i) => i.state === 'InService').length, 2, 'back on spot');
  });

  it('both fail: the node is tainted and keeps its pods until an operator says drain', async function () {
    const { atRisk, nodeName, handle } = await scenario();
    await e2e.aws.capacityError(SPOT);
    await e2e.aws.capacityError(ON_DEMAND);
    await requestRebalance(e2e.client, TASK_QUEUE, { instanceId: atRisk, nodeName });
    const holding = await waitForStatus(handle, (s) => s.phase === 'holding');
    assert.equal(holding.replacement, 'capacity-unavailable');
    const node = await e2e.core.readNode({ name: nodeName });
    assert.ok(node.spec?.taints?.some((t) => t.key === 'spot-instance-terminating' && t.effect === 'NoSchedule'));
    assert.notEqual(node.spec?.unschedulable, true);
    assert.equal(await podGone(`web-${atRisk.slice(-6)}`), false, 'pods stay while there is no replacement');

    await handle.signal(drainNowSignal, { reason: 'end-to-end test' });
    const result = await handle.result();
    assert.equal(result.drained, true);
    assert.ok(await podGone(`web-${atRisk.slice(-6)}`));
    assert.ok(!(await e2e.group(SPOT)).instances.some((i) => i.id === atRisk));
  });

  it('interruption notice mid-wait: drained at once, the capacity steps go on', async function () {
    const { atRisk, nodeName, handle } = await scenario();
    await e2e.aws.delay(SPOT, 25);
    await requestRebalance(e2e.client, TASK_QUEUE, { instanceId: atRisk, nodeName });
    await waitForStatus(handle, (s) => s.capacityPhase === 'waiting-for-spot');
    await reportInterruption(e2e.client, TASK_QUEUE, { instanceId: atRisk, nodeName }, { action: 'terminate', time: new Date(Date.now() + 120_000).toISOString() });
    const drained = await waitForStatus(handle, (s) => s.drain !== undefined);
    assert.equal(drained.capacityPhase, 'waiting-for-spot', 'drained while the spot instance is still pending');
    assert.ok(await podGone(`web-${atRisk.slice(-6)}`));
    assert.deepEqual(await e2e.nodeState(nodeName), { taints: ['spot-instance-terminating=true:NoSchedule'], cordoned: true });
    const result = await handle.result();
    assert.equal(result.replacement, 'spot', 'the delayed spot instance came');
    assert.equal((await e2e.group(SPOT)).desired, 2);
  });
});
