// The rebalance workflow on the time-skipping test server with the real default timings (10 s polls, 120 s capacity
// and scale timeouts), the real activities, fake AWS groups and a fake Kubernetes API server.
import assert from 'node:assert/strict';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { reportInterruption, requestRebalance } from '../signaler/workflow-requests.js';
import { type CapacityStatus, capacityStatusQuery, type ReplacementAnswer } from '../workflows/capacity/api.js';
import { drainNowSignal, rebalanceStatusQuery } from '../workflows/rebalance/api.js';
import { type StepAnnouncement, UNPROTECTED_GROUP } from '../workflows/shared/announcements.js';
import { capacityWorkflowId, rebalanceWorkflowId } from '../workflows/shared/ids.js';
import type { rebalanceWorkflow } from '../workflows/rebalance/workflow.js';
import { awsError, INSUFFICIENT_CAPACITY } from './fakes/auto-scaling.js';
import { defaultFlowSettings, Harness } from './helpers/harness.js';
import { recordHistory } from './helpers/histories.js';
import { activityNames, waitForStatus } from './helpers/workflows.js';
import { createTimeSkippingEnv } from './helpers/temporal.js';
import { until } from '../scripts/peers/wait.js';

const TAINT = { key: 'spot-instance-terminating', value: 'true', effect: 'NoSchedule' };

describe('rebalance workflow (time-skipping, default timings)', function () {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  let atRisk: string;
  let spotInstances: string[];

  // A server per test: see createTimeSkippingEnv.
  beforeEach(async function () {
    env = await createTimeSkippingEnv();
  });
  afterEach(async function () {
    await env?.teardown();
  });

  beforeEach(async function () {
    h = await new Harness(env).start();
    spotInstances = h.aws.addGroup(h.spot, { desired: 3, max: 10 });
    h.aws.addGroup(h.onDemand, { desired: 0, max: 5 });
    atRisk = spotInstances[0];
    h.k8s.addNode({ name: 'node-a', instanceId: atRisk });
    h.k8s.addPod({ name: 'web-1', nodeName: 'node-a', ownerKind: 'ReplicaSet' });
    h.k8s.addPod({ name: 'web-2', nodeName: 'node-a', ownerKind: 'ReplicaSet' });
    h.k8s.addPod({ namespace: 'kube-system', name: 'aws-node-x', nodeName: 'node-a', ownerKind: 'DaemonSet' });
    h.k8s.addPod({ namespace: 'kube-system', name: 'kube-proxy-node-a', nodeName: 'node-a', mirror: true });
  });
  afterEach(async function () {
    await h.stop();
  });

  const start = () => requestRebalance(env.client, h.taskQueue, { instanceId: atRisk, nodeName: 'node-a' });
  const handle = (instanceId = atRisk): WorkflowHandle<typeof rebalanceWorkflow> =>
    env.client.workflow.getHandle(rebalanceWorkflowId(instanceId));

  /**
   * Results one after the other: a dozen concurrent result() calls on the time-skipping server overflow its response
   * headers and leave its clock stuck.
   */
  async function resultsInTurn(instanceIds: string[]) {
    const results = [];
    for (const instanceId of instanceIds) results.push(await handle(instanceId).result());
    return results;
  }

  /** Polls of a group, made by its capacity workflow on behalf of every waiting rebalance workflow. */
  async function groupPolls(asgName: string): Promise<number> {
    const names = await activityNames(env.client.workflow.getHandle(capacityWorkflowId(asgName)));
    return names.filter((name) => name === 'describeGroupProgress').length;
  }

  function assertTaintedAndDrained(): void {
    const node = h.k8s.nodes.get('node-a');
    assert.deepEqual(node?.spec?.taints, [TAINT]);
    assert.equal(node?.spec?.unschedulable, true);
    assert.deepEqual(h.k8s.podsOn('node-a').sort(), ['kube-system/aws-node-x', 'kube-system/kube-proxy-node-a']);
  }

  /** A pod nobody recreates (no controller) and one whose emptyDir data would be lost, beside node-a's web pods. */
  function addPodsAnEvictionWouldLose(): void {
    h.k8s.addPod({ namespace: 'ops', name: 'debug-shell', nodeName: 'node-a' });
    h.k8s.addPod({ name: 'cache-0', nodeName: 'node-a', ownerKind: 'ReplicaSet', emptyDirs: ['scratch'] });
  }
  const LEFT_PODS = ['ops/debug-shell (no controller: nothing recreates it)', 'default/cache-0 (emptyDir local storage (scratch): its data would be lost)'];
  const NOTICE = { action: 'terminate', time: '2026-11-21T10:00:00Z' };

  it('spot success: +1 spot, taint, drain, terminate the drained instance with decrement', async function () {
    const result = await h.run(async () => {
      await start();
      const outcome = await handle().result();
      await recordHistory(handle(), 'rebalance-spot-success');
      return outcome;
    });
    assert.equal(result.replacement, 'spot');
    assert.ok(result.replacementInstanceId && !spotInstances.includes(result.replacementInstanceId));
    assert.equal(result.tainted, true);
    assert.equal(result.drained, true);
    assert.equal(result.instanceFate, 'terminated');
    assertTaintedAndDrained();
    assert.deepEqual(h.aws.callsOf('SetDesiredCapacity').map((c) => c.DesiredCapacity), [4]);
    assert.deepEqual(h.aws.callsOf('TerminateInstanceInAutoScalingGroup'), [{ InstanceId: atRisk, ShouldDecrementDesiredCapacity: true }]);
    assert.equal(h.aws.desired(h.spot), 3, 'the spot group ends at its original size');
    assert.ok(!h.aws.instanceIds(h.spot).includes(atRisk));
    assert.equal(h.aws.desired(h.onDemand), 0);
    // The runbook reads in order; its short steps ran as local activities, inside the workflow tasks. Each step an
    // operator is told about (notice, replacement requested and ready, tainted, drained) is announced as it happens.
    const runbook = await activityNames(handle());
    assert.deepEqual(runbook, [
      'loadSettings', 'verifyNode', 'verifyProtectedInstance', 'announceStep', 'requestCapacityIncrease', 'announceStep', 'awaitNodeReady',
      'announceStep', 'taintNode', 'announceStep', 'cordonNode', 'evictPods', 'announceStep', 'releaseDrainSlot', 'requestInstanceRetirement',
    ]);
    const events = (await handle().fetchHistory()).events ?? [];
    const signals = events.flatMap((e) => e.workflowExecutionSignaledEventAttributes?.signalName ?? []);
    assert.deepEqual(signals, ['capacityAnswer', 'replacementAnswer', 'retirementAnswer'], 'the drain slot came with the replacement\'s answer');
    const workflowTasks = events.filter((e) => e.workflowTaskCompletedEventAttributes).length;
    assert.equal(workflowTasks, 5, 'start, grant, replacement (taint, cordon, drain), drained (retire), retired');
    assert.ok(
      !events.some((e) => e.signalExternalWorkflowExecutionInitiatedEventAttributes),
      'the drain slot is given back by a local activity, without a signal command and the workflow task it brings',
    );
    assert.deepEqual(
      await activityNames(handle(), { localToo: false }),
      ['evictPods'],
      'only the drain goes through the activity queue: the replacement\'s node was Ready at the first look, and the retirement request is a local activity',
    );
  });

  it('a replacement whose node is not Ready at the first look: the taint waits in an activity until it is', async function () {
    let registered: string | undefined;
    // The node registers NotReady and turns Ready 7 s later (real time), after the workflow's 5 s first look.
    h.aws.onInService = (instanceId) => {
      registered = `node-${instanceId.slice(2)}`;
      const name = registered;
      h.k8s.addNode({ name, instanceId, ready: false });
      setTimeout(() => h.k8s.setNodeReady(name, true), 7_000);
    };
    const [result, status] = await h.run(async () => {
      await start();
      return [await handle().result(), await handle().query(rebalanceStatusQuery)] as const;
    });
    assert.equal(result.tainted, true);
    assert.equal(status.replacementNodeName, registered);
    assert.ok(!status.notes.some((n) => /has no Ready node/.test(n)), status.notes.join('\n'));
    const runbook = await activityNames(handle());
    assert.deepEqual(runbook.slice(runbook.indexOf('requestCapacityIncrease') + 1, runbook.indexOf('taintNode') + 1), ['announceStep', 'awaitNodeReady', 'awaitNodeReady', 'announceStep', 'taintNode']);
    assert.deepEqual(await activityNames(handle(), { localToo: false }), ['awaitNodeReady', 'evictPods']);
  });

  it('capacity error on spot: falls back to on-demand at once, without waiting for the timeout', async function () {
    h.aws.setLaunch(h.spot, { kind: 'capacity-error', message: INSUFFICIENT_CAPACITY });
    const [result, status] = await h.run(async () => {
      await start();
      return [await handle().result(), await handle().query(rebalanceStatusQuery)] as const;
    });
    assert.equal(result.replacement, 'on-demand');
    assert.equal(h.aws.desired(h.onDemand), 1);
    assert.match(status.spot.failure ?? '', /capacity problem: Failed: We currently do not have sufficient m5.large capacity/);
    assert.deepEqual(
      h.fallbackReports.map((r) => [r.onDemandInstanceId, r.warnedInstanceId, r.warnedNodeName]),
      [[result.replacementInstanceId, atRisk, 'node-a']],
      'the revert-to-spot monitor is told which on-demand instance was launched for which node',
    );
    // The spot group goes on being polled once a minute afterwards (its +1 is watched for a late instance): the waiter's
    // own count says what its wait took.
    assert.equal(status.spot.polls, 1, 'the spot group\'s first poll found the failure');
    assert.equal(await groupPolls(h.onDemand), 1, 'the on-demand group\'s first poll found the instance');
    assert.ok(!(await activityNames(handle())).includes('describeScaleOut'), 'the rebalance workflow does not poll itself');
    assertTaintedAndDrained();
    assert.equal(result.instanceFate, 'terminated');
  });

  it('a spot launch lost while launching: the next poll reads the scaling activities again and falls back to on-demand', async function () {
    h.aws.setLaunch(h.spot, { kind: 'lost-while-launching', looks: 3, message: INSUFFICIENT_CAPACITY });
    const [result, status] = await h.run(async () => {
      await start();
      return [await handle().result(), await handle().query(rebalanceStatusQuery)] as const;
    });
    assert.equal(result.replacement, 'on-demand');
    assert.match(status.spot.failure ?? '', /capacity problem: Failed: We currently do not have sufficient m5.large capacity/);
    const activityReads = h.aws.callsOf('DescribeScalingActivities').filter((c) => c.AutoScalingGroupName === h.spot);
    assert.equal(activityReads.length, 2, 'read at the first poll, skipped while the instance was launching, read again once it was gone');
    const polls = status.spot.polls ?? 0;
    assert.ok(polls >= 3 && polls <= 5, `${polls} spot polls: the first, instances-only looks until the launch was lost, then one that found why`);
    assert.ok((await groupPolls(h.spot)) >= polls, 'then one a minute, watching for an instance that comes late');
    assertTaintedAndDrained();
  });

  it('spot timeout: polls for 120 s (the instance launching: its state alone, every 5 s), then falls back to on-demand', async function () {
    h.aws.setLaunch(h.spot, { kind: 'never' });
    const [result, status] = await h.run(async () => {
      await start();
      return [await handle().result(), await handle().query(rebalanceStatusQuery)] as const;
    });
    assert.equal(result.replacement, 'on-demand');
    assert.equal(status.spot.failure, 'no new instance InService within 120 s');
    // The first poll reads the scaling activities too; from then on the new instance is launching (Pending), so the
    // group's instances alone are read, twice per 10 s interval, on the clock's 5 s grid, and once more at the deadline:
    // 25 or 26 polls, by where the wait starts on the grid.
    const polls = status.spot.polls ?? 0;
    assert.ok(polls === 25 || polls === 26, `${polls} spot polls while it waited (t = 0, then every 5 s on the grid, and at 120 s)`);
    assert.ok((await groupPolls(h.spot)) >= 25, 'then one a minute, watching for the instance that comes late');
    const activityReads = h.aws.callsOf('DescribeScalingActivities').filter((c) => c.AutoScalingGroupName === h.spot);
    assert.equal(activityReads.length, 1, 'the scaling activities read once, at the first poll');
    assert.equal(await groupPolls(h.onDemand), 1, '1 on-demand poll');
    assertTaintedAndDrained();
    // Spot was raised to 4 and keeps its pending launch; the drained instance went with decrement: back to 3.
    assert.equal(h.aws.desired(h.spot), 3);
    assert.equal(h.aws.desired(h.onDemand), 1);
  });

  it('both fail: the node is tainted but not drained, and the outcome is reported', async function () {
    h.aws.setLaunch(h.spot, { kind: 'capacity-error', message: INSUFFICIENT_CAPACITY });
    h.aws.setLaunch(h.onDemand, { kind: 'capacity-error', message: 'Could not launch On-Demand Instances. InsufficientInstanceCapacity - There is no capacity.' });
    await h.run(async () => {
      await start();
      const status = await waitForStatus(handle(), (s) => s.phase === 'holding');
      assert.equal(status.replacement, 'capacity-unavailable');
      assert.match(status.onDemand?.failure ?? '', /InsufficientInstanceCapacity/);
      assert.deepEqual(h.k8s.nodes.get('node-a')?.spec?.taints, [TAINT]);
      assert.notEqual(h.k8s.nodes.get('node-a')?.spec?.unschedulable, true, 'not cordoned');
      assert.equal(h.k8s.requestsMatching('POST', '/eviction').length, 0, 'nothing evicted');
      const description = await handle().describe();
      assert.equal(description.typedSearchAttributes.get({ name: 'SpotGuardOutcome', type: 'KEYWORD' }), 'capacity-unavailable');
      assert.equal(description.typedSearchAttributes.get({ name: 'SpotGuardPhase', type: 'KEYWORD' }), 'holding');

      // AWS then takes the instance: the hold ends and the spot group gives back the increment made for it.
      h.aws.reclaim(atRisk);
      const result = await handle().result();
      assert.equal(result.replacement, 'capacity-unavailable');
      assert.equal(result.drained, false);
      assert.equal(result.instanceFate, 'reclaimed-by-aws');
      assert.equal(h.aws.desired(h.spot), 3);
      await recordHistory(handle(), 'rebalance-both-fail-reclaimed');
    });
  });

  it('both fail, then an operator asks to drain: the held node is drained and retired, the pods nothing recreates too', async function () {
    h.aws.setLaunch(h.spot, { kind: 'capacity-error', message: INSUFFICIENT_CAPACITY });
    h.aws.setLaunch(h.onDemand, { kind: 'capacity-error', message: INSUFFICIENT_CAPACITY });
    addPodsAnEvictionWouldLose(); // drainNow is the operator's decision: every pod goes
    const result = await h.run(async () => {
      await start();
      await waitForStatus(handle(), (s) => s.phase === 'holding');
      await handle().signal(drainNowSignal, { reason: 'maintenance window' });
      return handle().result();
    });
    assert.equal(result.drained, true);
    assert.equal(result.instanceFate, 'terminated');
    assertTaintedAndDrained();
  });

  it('signals without input wedge nothing: a bare drainNow (the CLI without --input) still drains a held node', async function () {
    h.aws.setLaunch(h.spot, { kind: 'capacity-error', message: INSUFFICIENT_CAPACITY });
    h.aws.setLaunch(h.onDemand, { kind: 'capacity-error', message: INSUFFICIENT_CAPACITY });
    const result = await h.run(async () => {
      await start();
      await waitForStatus(handle(), (s) => s.phase === 'holding');
      // Malformed answers first: ignored, no workflow task fails on them.
      await handle().signal('replacementAnswer', null);
      await handle().signal('drainSlotAnswer', { status: 'granted' });
      await handle().signal('drainNow');
      const status = await waitForStatus(handle(), (s) => s.drainRequest !== undefined);
      assert.equal(status.drainRequest?.reason, 'no reason given');
      return handle().result();
    });
    assert.equal(result.drained, true);
    assert.equal(result.instanceFate, 'terminated');
    assertTaintedAndDrained();
  });

  it('a rebalance recommendation leaves the pods nothing recreates and keeps the instance; an interruption notice then evicts them and retires it', async function () {
    addPodsAnEvictionWouldLose();
    const [result, status] = await h.run(async () => {
      await start();
      const kept = await waitForStatus(handle(), (s) => s.phase === 'awaiting-reclaim');
      assert.equal(kept.drain?.complete, false);
      assert.deepEqual(kept.drain?.evicted.sort(), ['default/web-1', 'default/web-2']);
      assert.deepEqual(kept.drain?.left, LEFT_PODS, 'the status says which pods were left and why');
      assert.deepEqual(kept.drain?.remaining, []);
      assert.ok(kept.notes.some((n) => n.includes(`left 2 pod(s) an eviction would lose, until an interruption notice or drainNow`) && n.includes(LEFT_PODS.join(', '))), kept.notes.join('\n'));
      assert.deepEqual(h.k8s.podsOn('node-a').sort(), ['default/cache-0', 'kube-system/aws-node-x', 'kube-system/kube-proxy-node-a', 'ops/debug-shell']);
      assert.deepEqual(h.aws.callsOf('TerminateInstanceInAutoScalingGroup'), [], 'not terminated: that would kill the pods it left');
      assert.equal(h.aws.desired(h.spot), 4, 'the replacement stays, and so does the instance it was raised for');

      await reportInterruption(env.client, h.taskQueue, { instanceId: atRisk, nodeName: 'node-a' }, NOTICE);
      return [await handle().result(), await handle().query(rebalanceStatusQuery)] as const;
    });
    assert.equal(result.drained, true);
    assert.equal(result.instanceFate, 'terminated');
    assert.ok(result.notes.some((n) => n.includes('draining again (attempt 2): an interruption notice or drainNow arrived')), result.notes.join('\n'));
    assertTaintedAndDrained();
    assert.deepEqual(h.aws.callsOf('TerminateInstanceInAutoScalingGroup'), [{ InstanceId: atRisk, ShouldDecrementDesiredCapacity: true }]);
    assert.equal(h.aws.desired(h.spot), 3, 'the group ends at its original size');
    assert.deepEqual(status.drain?.evicted.sort(), ['default/cache-0', 'ops/debug-shell']);
    assert.deepEqual(status.drain?.left, []);
  });

  it('with SPOT_GUARD_EVICT_UNRECREATABLE_PODS=always a rebalance recommendation evicts the pods nothing recreates too, and retires the instance', async function () {
    h.settings = defaultFlowSettings(h.spot, h.onDemand, { SPOT_GUARD_EVICT_UNRECREATABLE_PODS: 'always' });
    addPodsAnEvictionWouldLose();
    const [result, status] = await h.run(async () => {
      await start();
      return [await handle().result(), await handle().query(rebalanceStatusQuery)] as const;
    });
    assert.equal(result.drained, true);
    assert.equal(result.instanceFate, 'terminated');
    assertTaintedAndDrained();
    assert.deepEqual(status.drain?.evicted.sort(), ['default/cache-0', 'default/web-1', 'default/web-2', 'ops/debug-shell']);
    assert.deepEqual((await activityNames(handle())).filter((name) => name === 'evictPods'), ['evictPods'], 'one drain, at once');
    assert.deepEqual(h.aws.callsOf('TerminateInstanceInAutoScalingGroup'), [{ InstanceId: atRisk, ShouldDecrementDesiredCapacity: true }]);
  });

  it('an interruption notice while a recommendation\'s drain leaves those pods (a budget holding another) evicts them at once', async function () {
    addPodsAnEvictionWouldLose();
    h.k8s.pdbBlocks.set('default/web-1', Number.MAX_SAFE_INTEGER); // the drain runs on, up to its 300 s timeout
    const result = await h.run(async () => {
      await start();
      await waitForStatus(handle(), (s) => s.phase === 'draining');
      await new Promise((resolve) => setTimeout(resolve, 300)); // a few rounds of the drain that leaves them
      assert.ok(h.k8s.podsOn('node-a').includes('ops/debug-shell'));
      await reportInterruption(env.client, h.taskQueue, { instanceId: atRisk, nodeName: 'node-a' }, NOTICE);
      const cutShort = await waitForStatus(handle(), (s) => s.notes.some((n) => n.includes('interruption notice or drainNow during the drain')), 10_000);
      assert.equal(cutShort.phase, 'draining');
      for (let i = 0; i < 100 && h.k8s.podsOn('node-a').some((p) => p === 'ops/debug-shell' || p === 'default/cache-0'); i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.deepEqual(h.k8s.podsOn('node-a').sort(), ['default/web-1', 'kube-system/aws-node-x', 'kube-system/kube-proxy-node-a'], 'evicted while the budget still holds web-1');
      h.k8s.pdbBlocks.delete('default/web-1');
      return handle().result();
    });
    assert.equal(result.drained, true);
    assert.equal(result.instanceFate, 'terminated');
    assertTaintedAndDrained();
    assert.deepEqual(h.aws.callsOf('TerminateInstanceInAutoScalingGroup'), [{ InstanceId: atRisk, ShouldDecrementDesiredCapacity: true }]);
    assert.equal(h.aws.desired(h.spot), 3);
  });

  it('interruption notice mid-wait: taints and drains at once while the capacity steps go on', async function () {
    h.aws.setLaunch(h.spot, { kind: 'never' });
    const result = await h.run(async () => {
      await start();
      await waitForStatus(handle(), (s) => s.capacityPhase === 'waiting-for-spot');
      await reportInterruption(env.client, h.taskQueue, { instanceId: atRisk, nodeName: 'node-a' }, {
        action: 'terminate',
        time: '2026-11-21T10:00:00Z',
      });
      await waitForStatus(handle(), (s) => s.drain !== undefined);
      const midway = await handle().query(rebalanceStatusQuery);
      assert.equal(midway.capacityPhase, 'waiting-for-spot', 'drained while spot is still being waited for');
      const outcome = await handle().result();
      await recordHistory(handle(), 'rebalance-interruption-mid-wait');
      return outcome;
    });
    assertTaintedAndDrained();
    assert.equal(result.replacement, 'on-demand', 'the capacity steps went on to the fallback');
    const names = await activityNames(handle());
    const onDemandRequest = names.lastIndexOf('requestCapacityIncrease');
    assert.ok(names.indexOf('evictPods') < onDemandRequest, `drain before the on-demand fallback: ${names.join(', ')}`);
    assert.equal(result.instanceFate, 'terminated');
  });

  it('interruption notice mid-wait, then the spot replacement: the drain slot is taken once and given back', async function () {
    h.aws.setLaunch(h.spot, { kind: 'in-service-after-looks', looks: 4 });
    const [result, status] = await h.run(async () => {
      await start();
      await waitForStatus(handle(), (s) => s.capacityPhase === 'waiting-for-spot');
      await reportInterruption(env.client, h.taskQueue, { instanceId: atRisk, nodeName: 'node-a' }, { action: 'terminate', time: '2026-11-21T10:00:00Z' });
      await waitForStatus(handle(), (s) => s.drainSlot?.state === 'bypassed');
      return [await handle().result(), await handle().query(rebalanceStatusQuery)] as const;
    });
    assertTaintedAndDrained();
    assert.equal(result.replacement, 'spot');
    assert.ok(status.drain, 'drained at the notice, before the replacement');
    // The capacity workflow dropped the slot the waiter had asked for with its request: its answer carries none, so
    // no slot is held for a node that drained already.
    const events = (await handle().fetchHistory()).events ?? [];
    const answers = events.flatMap((e) => {
      const signal = e.workflowExecutionSignaledEventAttributes;
      const payload = signal?.signalName === 'replacementAnswer' ? signal.input?.payloads?.[0] : undefined;
      return payload ? [defaultPayloadConverter.fromPayload<ReplacementAnswer>(payload)] : [];
    });
    assert.deepEqual(answers.map((a) => [a.status, 'drainSlot' in a]), [['in-service', false]]);
  });

  it('MaxSize reached on spot: no spot change, straight to on-demand', async function () {
    h.aws.groups.get(h.spot)!.max = 3;
    const [result, status] = await h.run(async () => {
      await start();
      return [await handle().result(), await handle().query(rebalanceStatusQuery)] as const;
    });
    assert.equal(result.replacement, 'on-demand');
    assert.deepEqual(h.aws.callsOf('SetDesiredCapacity').map((c) => c.AutoScalingGroupName), [h.onDemand]);
    assert.equal(status.spot.failure, 'group is at its MaxSize (3)');
    // The spot group was never raised, so it must not shrink: it replaces the drained instance and keeps its size.
    assert.deepEqual(h.aws.callsOf('TerminateInstanceInAutoScalingGroup'), [{ InstanceId: atRisk, ShouldDecrementDesiredCapacity: false }]);
    assert.equal(h.aws.desired(h.spot), 3);
  });

  it('a repeated notice for the same instance starts no second run while one is open; after it, a new run for a terminated instance changes nothing', async function () {
    h.aws.setLaunch(h.spot, { kind: 'in-service-after-looks', looks: 3 });
    await h.run(async () => {
      const first = await start();
      const second = await start();
      const third = await start();
      assert.ok(first.runId);
      assert.equal(second.runId, first.runId);
      assert.equal(third.runId, first.runId);
      // Not result(): with nothing left to wait for, the test server would skip time to the capacity workflow's 10-year
      // execution timeout (a test-server default, none on a real server) while result() waits.
      await until('the first run to end', async () => (await handle().describe()).status.name !== 'RUNNING');
      const afterwards = await start();
      assert.notEqual(afterwards.runId, first.runId, 'a notice after the run closed is acted on');
      // Rejected (the instance is gone), or, within the 2 s its membership read is shared, told again what its books
      // already say: either way it ends without changing anything.
      const ended = await handle().result().then((r) => r.instanceFate, (error: WorkflowFailedError) => error.cause?.message);
      assert.match(String(ended), /^terminated$|rejected, nothing changed/);
    });
    assert.deepEqual(h.aws.callsOf('SetDesiredCapacity').map((c) => c.DesiredCapacity), [4]);
    assert.equal(h.aws.callsOf('TerminateInstanceInAutoScalingGroup').length, 1);
  });

  it('two nodes of the same group warned at the same moment raise desired capacity by exactly 2', async function () {
    const second = spotInstances[1];
    h.k8s.addNode({ name: 'node-b', instanceId: second });
    const results = await h.run(async () => {
      await Promise.all([
        requestRebalance(env.client, h.taskQueue, { instanceId: atRisk, nodeName: 'node-a' }),
        requestRebalance(env.client, h.taskQueue, { instanceId: second, nodeName: 'node-b' }),
      ]);
      return resultsInTurn([atRisk, second]);
    });
    assert.deepEqual(results.map((r) => r.replacement), ['spot', 'spot']);
    const targets = h.aws.callsOf('SetDesiredCapacity').map((c) => c.DesiredCapacity as number);
    assert.deepEqual(targets, [5], 'one call 3 → 5 for both requests (coalesced)');
    assert.notEqual(results[0]?.replacementInstanceId, results[1]?.replacementInstanceId, 'each got an instance of its own');
    assert.equal(new Set(h.aws.instanceIds(h.spot).filter((id) => !spotInstances.includes(id))).size, 2, 'two replacements launched');
    assert.equal(h.aws.desired(h.spot), 3, 'both drained instances terminated with decrement');
    assert.deepEqual(h.aws.instanceIds(h.spot).filter((id) => spotInstances.includes(id)), [spotInstances[2]]);
  });

  it('a wave of 12 warned nodes: one SetDesiredCapacity, one poll per interval for all, each told its own instance', async function () {
    h.aws.groups.get(h.spot)!.max = 40;
    h.aws.setLaunch(h.spot, { kind: 'in-service-after-looks', looks: 3 });
    const wave = h.aws.addInstances(h.spot, 9).concat(spotInstances);
    wave.forEach((instanceId, n) => h.k8s.addNode({ name: `wave-${n}`, instanceId }));
    const results = await h.run(async () => {
      await Promise.all(wave.map((instanceId, n) => requestRebalance(env.client, h.taskQueue, { instanceId, nodeName: `wave-${n}` })));
      const outcomes = await resultsInTurn(wave);
      await recordHistory(env.client.workflow.getHandle(capacityWorkflowId(h.spot)), 'capacity-wave');
      return outcomes;
    });
    assert.ok(results.every((r) => r.replacement === 'spot'), results.map((r) => r.replacement).join(', '));
    const replacements = results.map((r) => r.replacementInstanceId);
    assert.equal(new Set(replacements).size, 12, 'twelve different replacement instances');
    assert.ok(replacements.every((id) => id && !wave.includes(id)));
    const raises = h.aws.callsOf('SetDesiredCapacity').map((c) => c.DesiredCapacity);
    assert.deepEqual(raises, [24], 'one call 12 → 24 for all twelve (coalesced within the 2 s window)');
    const polls = await groupPolls(h.spot);
    assert.ok(polls <= 4, `${polls} polls of the group for twelve waiters (instances InService on the third look)`);
    assert.equal(h.aws.desired(h.spot), 12, 'every drained instance terminated with decrement: back to the original size');
    // The wave's retirements reach the capacity workflow by signal: no Update, so no cap of 10 in flight to run into.
    const events = (await env.client.workflow.getHandle(capacityWorkflowId(h.spot)).fetchHistory()).events ?? [];
    assert.equal(events.filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes).length, 0, 'no Updates');
    const signalled = events.filter((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'requestInstanceRetirement');
    assert.equal(signalled.length, 12, 'one retirement request by signal per drained node');
  });

  it('the disruption budget drains one node at a time when set to 1, the rest queued in order and visible', async function () {
    h.settings = { ...h.settings, drainBudget: { nodes: 1 } };
    const trio = spotInstances;
    trio.forEach((instanceId, n) => {
      if (n > 0) h.k8s.addNode({ name: `node-${'abc'[n]}`, instanceId });
      h.k8s.addPod({ name: `app-${n}`, nodeName: `node-${'abc'[n]}`, ownerKind: 'ReplicaSet' });
    });
    // Each pod is refused once (a PDB), so a drain takes a moment and the others are seen waiting.
    trio.forEach((_, n) => h.k8s.pdbBlocks.set(`default/app-${n}`, 1));
    trio.forEach((_, n) => h.k8s.addPod({ name: `app-${n}-2`, nodeName: `node-${'abc'[n]}`, ownerKind: 'ReplicaSet' }));
    const [results, queuedSeen] = await h.run(async () => {
      await Promise.all(trio.map((instanceId, n) => requestRebalance(env.client, h.taskQueue, { instanceId, nodeName: `node-${'abc'[n]}` })));
      const capacity = env.client.workflow.getHandle(capacityWorkflowId(h.spot));
      let seen: CapacityStatus | undefined;
      for (let i = 0; i < 400 && !seen; i++) {
        const status = await capacity.query(capacityStatusQuery).catch(() => undefined); // not started yet
        if (status && status.draining.length === 1 && status.drainQueue.length >= 1) seen = status;
        else await new Promise((resolve) => setTimeout(resolve, 25));
      }
      return [await resultsInTurn(trio), seen] as const;
    });
    assert.ok(queuedSeen, 'the capacity workflow status showed one draining and the rest queued');
    assert.deepEqual(queuedSeen.drainBudget, { limit: 1, budget: '1 node(s)' });
    assert.ok(results.every((r) => r.drained));
    // Drains never overlapped: the eviction requests come node by node, never interleaved.
    const nodeOfEach = h.k8s.requestsMatching('POST', '/eviction').flatMap((r) => /app-(\d)/.exec(r.path)?.[1] ?? []);
    const runs = nodeOfEach.filter((node, i) => i === 0 || node !== nodeOfEach[i - 1]);
    assert.equal(runs.length, 3, `evictions by node, in order: ${nodeOfEach.join(' ')}`);
  });

  it('an interruption notice while queued by the disruption budget drains at once', async function () {
    h.settings = { ...h.settings, drainBudget: { nodes: 1 } };
    const second = spotInstances[1];
    h.k8s.addNode({ name: 'node-b', instanceId: second });
    h.k8s.addPod({ name: 'app-b', nodeName: 'node-b', ownerKind: 'ReplicaSet' });
    h.k8s.pdbBlocks.set('default/web-1', Number.MAX_SAFE_INTEGER); // node-a's drain holds its slot
    await h.run(async () => {
      await requestRebalance(env.client, h.taskQueue, { instanceId: atRisk, nodeName: 'node-a' });
      await waitForStatus(handle(atRisk), (s) => s.phase === 'draining');
      await requestRebalance(env.client, h.taskQueue, { instanceId: second, nodeName: 'node-b' });
      const queued = await waitForStatus(handle(second), (s) => s.phase === 'awaiting-drain-slot' && s.drainSlot !== undefined);
      assert.deepEqual([queued.drainSlot?.state, queued.drainSlot?.position], ['queued', 1]);
      await reportInterruption(env.client, h.taskQueue, { instanceId: second, nodeName: 'node-b' }, { action: 'terminate', time: '2026-11-21T10:02:00Z' });
      const drained = await waitForStatus(handle(second), (s) => s.drain !== undefined);
      assert.equal(drained.drainSlot?.state, 'bypassed');
      assert.ok(drained.notes.some((n) => n.includes('draining at once')));
      h.k8s.pdbBlocks.delete('default/web-1');
      await resultsInTurn([atRisk, second]);
    });
    assert.deepEqual(h.k8s.podsOn('node-b'), []);
  });

  it('an increase whose answer is lost is retried without a second increment', async function () {
    // AWS applies the change but the answer is lost: the retry reads the group first and finds its target already set.
    h.aws.fail('SetDesiredCapacity', 1, () => awsError('ServiceUnavailable', 'Service is unavailable', 503), true);
    const result = await h.run(async () => {
      await start();
      return handle().result();
    });
    assert.equal(result.replacement, 'spot');
    assert.deepEqual(h.aws.callsOf('SetDesiredCapacity').map((c) => c.DesiredCapacity), [4], 'sent once: the retry found it applied');
    assert.equal(h.aws.instanceIds(h.spot).length, 3, 'one replacement, one terminated: no extra instance');
    assert.equal(h.aws.desired(h.spot), 3);
  });

  it('a node whose providerID names another instance is rejected with nothing changed', async function () {
    const other = spotInstances[1];
    h.k8s.addNode({ name: 'node-a', instanceId: other });
    await h.run(async () => {
      await start();
      await assert.rejects(handle().result(), (error: unknown) => {
        assert.ok(error instanceof WorkflowFailedError);
        assert.match(String(error.cause?.message), new RegExp(`rejected, nothing changed: node "node-a" has providerID "aws:///us-east-1a/${other}", which names instance ${other}, not ${atRisk}`));
        return true;
      });
    });
    assert.equal(h.aws.callsOf('SetDesiredCapacity').length, 0);
    assert.equal(h.aws.callsOf('TerminateInstanceInAutoScalingGroup').length, 0);
    assert.equal(h.k8s.requestsMatching('PATCH', '/nodes/').length, 0);
    assert.equal(h.k8s.requestsMatching('POST', '/eviction').length, 0);
    assert.equal(h.aws.desired(h.spot), 3);
  });

  it('an instance of a group that is not protected is rejected with nothing changed, announced under no group', async function () {
    const [onDemandInstance] = h.aws.addGroup('other-asg', { desired: 1, max: 1 });
    h.k8s.addNode({ name: 'node-c', instanceId: onDemandInstance });
    const announced: StepAnnouncement[] = [];
    h.activityOverrides = { announceStep: (announcement) => (announced.push(announcement), Promise.resolve()) };
    await h.run(async () => {
      await requestRebalance(env.client, h.taskQueue, { instanceId: onDemandInstance, nodeName: 'node-c' });
      await assert.rejects(handle(onDemandInstance).result(), /./);
      const failure = await handle(onDemandInstance).result().then(() => undefined, (error: WorkflowFailedError) => error.cause?.message);
      assert.match(String(failure), /"other-asg", which Spot Guard does not protect/);
    });
    assert.equal(h.aws.callsOf('SetDesiredCapacity').length, 0);
    assert.equal(h.k8s.requestsMatching('PATCH', '/nodes/').length, 0);
    // Refused before any pair is known: one label for every unprotected group, and no Event on a node.
    assert.deepEqual(announced.map((a) => [a.step, a.group, a.nodeName]), [['rejected', UNPROTECTED_GROUP, undefined]]);
  });

  it('a node deleted from Kubernetes mid-flow is no failure: the books are still kept', async function () {
    h.aws.setLaunch(h.spot, { kind: 'in-service-after-looks', looks: 2 });
    const result = await h.run(async () => {
      await start();
      await waitForStatus(handle(), (s) => s.capacityPhase === 'waiting-for-spot');
      h.k8s.nodes.delete('node-a'); // reclaimed, or removed by another controller
      return handle().result();
    });
    assert.equal(result.replacement, 'spot');
    assert.equal(result.tainted, false);
    assert.equal(result.instanceFate, 'terminated');
    assert.ok(result.notes.some((n) => n.includes('node node-a is gone from Kubernetes')));
    assert.equal(h.aws.desired(h.spot), 3);
  });

  it('malformed input is refused before anything runs', async function () {
    await h.run(async () => {
      const bad = await env.client.workflow.start<typeof rebalanceWorkflow>('rebalanceWorkflow', {
        workflowId: 'spot-guard-rebalance-bad-input',
        taskQueue: h.taskQueue,
        args: [{ instanceId: 'i-NOPE', nodeName: 'Node_A' }],
      });
      await assert.rejects(bad.result(), (error: unknown) => {
        assert.ok(error instanceof WorkflowFailedError);
        assert.match(String(error.cause?.message), /instanceId "i-NOPE" is not an EC2 instance id.*nodeName "Node_A" is not a Kubernetes node name/);
        return true;
      });
    });
    assert.equal(h.aws.calls.length, 0);
    assert.equal(h.k8s.requests.length, 0);
  });
});

