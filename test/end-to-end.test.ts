// End-to-end: the real worker process against the Temporal dev server, moto behind our launcher and a real Kubernetes
// control plane with kwok, driven by the same client call the signaler makes. Real time, default timings.
import assert from 'node:assert/strict';
import { TerminateInstanceInAutoScalingGroupCommand } from '@aws-sdk/client-auto-scaling';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
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
    // A held run watches its kept instance every 5 s and ends `kept` after 30 s, so a late notice fits in a test; the
    // on-demand fallback waits 20 s, so an instance that comes after its wait fits too.
    await e2e.startWorker({ SPOT_GUARD_RECLAIM_POLL_INTERVAL: '5', SPOT_GUARD_RECLAIM_WAIT: '30s', SPOT_GUARD_SCALE_TIMEOUT: '20' });
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

  /** No capacity anywhere: the warned node is tainted and held with its pods. */
  async function heldScenario(): Promise<Awaited<ReturnType<typeof scenario>>> {
    const held = await scenario();
    await e2e.aws.capacityError(SPOT);
    await e2e.aws.capacityError(ON_DEMAND);
    await requestRebalance(e2e.client, TASK_QUEUE, { instanceId: held.atRisk, nodeName: held.nodeName });
    await waitForStatus(held.handle, (s) => s.phase === 'holding');
    return held;
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

  // --- books per instance: every notice for a live instance acts, every +1 is settled once -------------------------

  it('an interruption notice after a held run ended kept drains the node, with no second +1', async function () {
    const { atRisk, nodeName, handle } = await heldScenario();
    assert.equal((await handle.result()).instanceFate, 'kept');
    assert.equal((await e2e.group(SPOT)).desired, 3, 'still raised for the kept instance');

    await reportInterruption(e2e.client, TASK_QUEUE, { instanceId: atRisk, nodeName }, { action: 'terminate', time: new Date(Date.now() + 120_000).toISOString() });
    const result = await handle.result();
    assert.equal(result.drained, true);
    assert.equal(result.instanceFate, 'terminated');
    assert.ok(await podGone(`web-${atRisk.slice(-6)}`), 'the pod was evicted');
    const spot = await e2e.group(SPOT);
    assert.equal(spot.desired, 2, 'one +1, one decrement');
    assert.ok(!spot.instances.some((i) => i.id === atRisk));
  });

  it('an operator terminating a kept instance with decrement leaves exactly one decrement', async function () {
    const { atRisk, handle } = await heldScenario();
    const other = (await e2e.group(SPOT)).instances.find((i) => i.id !== atRisk)?.id;
    await e2e.autoScaling.send(new TerminateInstanceInAutoScalingGroupCommand({ InstanceId: atRisk, ShouldDecrementDesiredCapacity: true }));
    assert.equal((await handle.result()).instanceFate, 'removed-by-someone-else');
    await new Promise((resolve) => setTimeout(resolve, 6_000)); // another look of the group: still no second decrement
    const spot = await e2e.group(SPOT);
    assert.equal(spot.desired, 2, 'raised to 3, lowered once by the operator');
    assert.deepEqual(spot.instances.map((i) => i.id), [other], 'the other running node stays');
  });

  it('a request naming another instance\'s node is refused, and the correct request that follows protects the instance', async function () {
    const { atRisk, nodeName, handle } = await scenario();
    const other = (await e2e.group(SPOT)).instances.find((i) => i.id !== atRisk)?.id as string;
    await requestRebalance(e2e.client, TASK_QUEUE, { instanceId: atRisk, nodeName: EndToEnd.nodeName(other) });
    const refused = await handle.result().then(() => 'completed', (error: WorkflowFailedError) => String(error.cause?.message));
    assert.match(refused, /rejected, nothing changed/);
    await requestRebalance(e2e.client, TASK_QUEUE, { instanceId: atRisk, nodeName });
    const result = await handle.result();
    assert.equal(result.instanceFate, 'terminated');
    assert.ok(await podGone(`web-${atRisk.slice(-6)}`));
    assert.equal((await e2e.group(SPOT)).desired, 2);
  });

  it('drainNow with no input (the CLI without --input) does not wedge the run: the held node is drained', async function () {
    const { atRisk, handle } = await heldScenario();
    await e2e.client.workflow.getHandle(rebalanceWorkflowId(atRisk)).signal('drainNow');
    const result = await handle.result();
    assert.equal(result.drained, true);
    assert.ok(await podGone(`web-${atRisk.slice(-6)}`));
    assert.equal((await e2e.group(SPOT)).desired, 2);
  });

  it('an on-demand instance that comes after its wait ended is settled: reported to the monitor, never left untracked', async function () {
    const { atRisk, nodeName } = await scenario();
    await e2e.aws.capacityError(SPOT);
    await e2e.aws.delay(ON_DEMAND, 30); // InService 30 s after the increase, 10 s after the 20 s wait ended
    await requestRebalance(e2e.client, TASK_QUEUE, { instanceId: atRisk, nodeName });
    const monitor = e2e.client.workflow.getHandle(monitorWorkflowId(SPOT, ON_DEMAND));
    await until('the late instance tracked by the monitor', async () => (await monitor.query(monitorStatusQuery)).events.some((e) => e.warnedInstanceId === atRisk), 150_000);
    const event = (await monitor.query(monitorStatusQuery)).events.find((e) => e.warnedInstanceId === atRisk);
    const onDemand = await e2e.group(ON_DEMAND);
    assert.equal(onDemand.desired, 1);
    assert.deepEqual(onDemand.instances.map((i) => [i.id, i.state]), [[event?.onDemandInstanceId, 'InService']], 'the late instance, and it is the one tracked');
  });
});
