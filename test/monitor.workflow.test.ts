// The revert-to-spot monitor on the time-skipping test server with the default timings (checks every 30 s, a 2-minute
// stability window, 10-minute cleanup), real activities, fake AWS groups and the fake Kubernetes API server.
import assert from 'node:assert/strict';
import type { WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createMonitorRequestActivities, ensureMonitor } from '../activities/monitor-requests.js';
import { checkNowSignal, type MonitorStatus, monitorStatusQuery, pauseMonitorSignal, resumeMonitorSignal } from '../workflows/monitor/api.js';
import { monitorWorkflowId } from '../workflows/shared/ids.js';
import type { monitorWorkflow } from '../workflows/monitor/workflow.js';
import { awsError, newInstanceId } from './fakes/auto-scaling.js';
import { defaultFlowSettings, Harness } from './helpers/harness.js';
import { recordHistory } from './helpers/histories.js';
import { createTimeSkippingEnv } from './helpers/temporal.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;

describe('revert-to-spot monitor (time-skipping, default timings)', function () {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  let spotIds: string[];
  let fallback: string; // the on-demand instance Spot Guard launched
  let other: string; // an on-demand instance it did not launch

  // A server per test: see createTimeSkippingEnv.
  beforeEach(async function () {
    env = await createTimeSkippingEnv();
  });
  afterEach(async function () {
    await env?.teardown();
  });

  beforeEach(async function () {
    h = await new Harness(env).start();
    spotIds = h.aws.addGroup(h.spot, { desired: 3, max: 6 });
    spotIds.forEach((instanceId, i) => h.k8s.addNode({ name: `spot-${i}`, instanceId }));
    [fallback, other] = h.aws.addGroup(h.onDemand, { desired: 2, max: 4 }) as [string, string];
    h.k8s.addNode({ name: 'od-1', instanceId: fallback });
    h.k8s.addNode({ name: 'od-2', instanceId: other });
    for (const name of ['web-1', 'web-2']) {
      h.k8s.addPod({ name, nodeName: 'od-1', ownerKind: 'ReplicaSet', ownerUid: 'rs-web', labels: { app: 'web' }, requests: { cpu: '500m', memory: '512Mi' } });
    }
    h.k8s.addPod({ namespace: 'kube-system', name: 'cni-od-1', nodeName: 'od-1', ownerKind: 'DaemonSet' });
    h.k8s.addPod({ name: 'api-1', nodeName: 'od-2', ownerKind: 'ReplicaSet', requests: { cpu: '250m' } });
    h.k8s.rescheduleEvictedTo = 'spot-0';
  });
  afterEach(async function () {
    await h.stop();
  });

  const handle = (): WorkflowHandle<typeof monitorWorkflow> => env.client.workflow.getHandle(monitorWorkflowId(h.spot, h.onDemand));
  const status = (): Promise<MonitorStatus> => handle().query(monitorStatusQuery);
  const terminations = () => h.aws.callsOf('TerminateInstanceInAutoScalingGroup');

  /**
   * Reports the fallback as a rebalance workflow does. The warned spot instance it stands in for has by default been
   * drained and terminated already: it is no longer in the spot group.
   */
  async function reportFallback(warned = { instanceId: newInstanceId(), nodeName: 'spot-warned' }): Promise<void> {
    await createMonitorRequestActivities(env.client, h.taskQueue).reportFallbackToMonitor({
      spotAsgName: h.spot,
      onDemandAsgName: h.onDemand,
      // The test server's clock runs ahead of this process's once earlier tests skipped time: use its clock.
      report: { onDemandInstanceId: fallback, warnedInstanceId: warned.instanceId, warnedNodeName: warned.nodeName, launchedAt: new Date(await env.currentTimeMs()).toISOString() },
    });
  }

  /** Starts the monitor as the worker does, and reports the fallback. */
  async function startWithFallback(warned?: { instanceId: string; nodeName: string }): Promise<void> {
    await ensureMonitor(env.client, h.taskQueue, h.spot, h.onDemand);
    await reportFallback(warned);
  }

  /** od-1 given back, not terminated: schedulable again (Spot Guard had cordoned it), its scale-down taint off. */
  function assertOd1Released(): void {
    assert.equal(terminations().length, 0);
    const od1 = h.k8s.nodes.get('od-1');
    assert.notEqual(od1?.spec?.unschedulable, true, 'uncordoned');
    assert.deepEqual(od1?.spec?.taints, [], 'scale-down taint removed');
  }

  /** Starts with the fallback while AWS refuses `times` terminations: returns at the check after 2 minutes, stuck terminating. */
  async function startStuckAtTermination(times: number): Promise<MonitorStatus> {
    h.aws.fail('TerminateInstanceInAutoScalingGroup', times, () => awsError('ValidationError', 'simulated refusal before terminate', 400));
    await startWithFallback();
    await env.sleep(135 * SECOND);
    const stuck = await status();
    assert.equal(stuck.inFlight?.step, 'terminating');
    return stuck;
  }

  it('removes exactly the fallback instance after 2 healthy minutes, terminating it with decrement', async function () {
    await h.run(async () => {
      await startWithFallback();
      await env.sleep(100 * SECOND);
      assert.equal(terminations().length, 0, 'not before the 2-minute stability window');
      assert.equal((await status()).phase, 'waiting-for-stability');

      await env.sleep(40 * SECOND);
      const after = await status();
      assert.equal(after.scaleDowns, 1, JSON.stringify(after.notes));
      assert.deepEqual(after.events.map((e) => [e.onDemandInstanceId, e.state]), [[fallback, 'removed']]);
      assert.equal(after.lastSafety?.safe, true);
      assert.match(after.lastSafety?.reason ?? '', /2 pod\(s\) can move: cpu 1000m, memory 1024Mi plus 10% buffer fits/);
      await recordHistory(handle(), 'monitor-scale-down');
    });
    assert.deepEqual(terminations(), [{ InstanceId: fallback, ShouldDecrementDesiredCapacity: true }]);
    assert.deepEqual(h.aws.instanceIds(h.onDemand), [other], 'the on-demand instance Spot Guard did not launch stays');
    assert.equal(h.aws.desired(h.onDemand), 1);
    const od1 = h.k8s.nodes.get('od-1');
    assert.equal(od1?.spec?.unschedulable, true);
    assert.deepEqual(od1?.spec?.taints, [{ key: 'spot-guard.io/scale-down-pending', value: 'true', effect: 'NoSchedule' }]);
    assert.deepEqual(h.k8s.podsOn('od-1'), ['kube-system/cni-od-1'], 'only the DaemonSet pod stays');
    assert.equal(h.k8s.podsOn('spot-0').length, 2, 'the web pods run on spot now');
  });

  it('leaves a fresh fallback alone for the stability window even when spot has long been stable', async function () {
    await h.run(async () => {
      await ensureMonitor(env.client, h.taskQueue, h.spot, h.onDemand);
      await env.sleep(5 * MINUTE);
      assert.equal((await status()).phase, 'idle');
      await reportFallback();
      await env.sleep(100 * SECOND);
      assert.equal(terminations().length, 0, 'it may still be taking the warned node\'s pods');
      await env.sleep(60 * SECOND);
      assert.equal((await status()).scaleDowns, 1);
    });
    assert.deepEqual(terminations(), [{ InstanceId: fallback, ShouldDecrementDesiredCapacity: true }]);
  });

  it('keeps a fallback while the spot instance it stands in for is still in the spot group, and says why', async function () {
    await h.run(async () => {
      await startWithFallback({ instanceId: spotIds[0], nodeName: 'spot-0' }); // still waiting for a drain slot, or held
      await env.sleep(4 * MINUTE);
      const kept = await status();
      assert.equal(kept.phase, 'blocked');
      assert.equal(kept.lastSafety?.reason, `kept while the spot instance it stands in for, ${spotIds[0]} (spot-0), is still in "${h.spot}"`);
      assert.equal(terminations().length, 0);

      h.aws.reclaim(spotIds[0]); // drained and terminated with decrement at last
      h.aws.groups.get(h.spot)!.desired = 2;
      await env.sleep(30 * SECOND);
      assert.equal((await status()).scaleDowns, 1);
    });
    assert.deepEqual(terminations(), [{ InstanceId: fallback, ShouldDecrementDesiredCapacity: true }]);
  });

  it('does not scale down while spot is unhealthy', async function () {
    h.k8s.setNodeReady('spot-1', false);
    await h.run(async () => {
      await startWithFallback();
      await env.sleep(5 * MINUTE);
      const now = await status();
      assert.equal(now.phase, 'waiting-for-health');
      assert.equal(now.healthySince, undefined);
      assert.deepEqual(now.lastCheck?.reasons, [`node spot-1 (${spotIds[1]}) is not Ready`]);
    });
    assert.equal(terminations().length, 0);
    assert.equal(h.k8s.requestsMatching('POST', '/eviction').length, 0);
  });

  it('a failed scaling activity since the last check breaks health; a spot node Spot Guard is draining does not', async function () {
    // spot-1 is being drained by a rebalance workflow: tainted, and NotReady by now. It is left out of the judgement.
    h.k8s.nodes.get('spot-1')!.spec!.taints = [{ key: 'spot-instance-terminating', value: 'true', effect: 'NoSchedule' }];
    h.k8s.setNodeReady('spot-1', false);
    await h.run(async () => {
      await startWithFallback();
      await env.sleep(45 * SECOND);
      assert.ok((await status()).healthySince, 'healthy although spot-1 is NotReady: Spot Guard drains it');

      const now = new Date(await env.currentTimeMs());
      h.aws.groups.get(h.spot)!.activities.push({
        ActivityId: 'launch-failed',
        AutoScalingGroupName: h.spot,
        Cause: 'An instance was started in response to a difference between desired and actual capacity',
        StartTime: now,
        EndTime: now,
        StatusCode: 'Failed',
        StatusMessage: 'Could not launch Spot Instances. InsufficientInstanceCapacity - There is no Spot capacity available.',
      });
      await env.sleep(30 * SECOND);
      const broken = await status();
      assert.equal(broken.healthySince, undefined);
      assert.match(broken.lastCheck?.reasons.join() ?? '', /scaling failed since the last check: Could not launch Spot Instances/);
      await env.sleep(30 * SECOND);
      assert.ok((await status()).healthySince, 'an old failure counts once: healthy again at the next check');
    });
  });

  it('restarts the stability window when health breaks in the middle', async function () {
    await h.run(async () => {
      await startWithFallback();
      await env.sleep(75 * SECOND);
      const healthy = await status();
      assert.ok(healthy.healthySince, 'healthy from the first check');

      h.aws.groups.get(h.spot)!.desired = 4; // a launch in progress: 3 of 4 InService
      await env.sleep(30 * SECOND);
      const broken = await status();
      assert.equal(broken.healthySince, undefined);
      assert.match(broken.lastCheck?.reasons.join() ?? '', /3 of 4 desired instances InService/);

      h.aws.groups.get(h.spot)!.desired = 3;
      await env.sleep(30 * SECOND);
      const healed = await status();
      assert.ok(healed.healthySince && healed.healthySince > healthy.healthySince, 'a new streak');
      await env.sleep(75 * SECOND);
      assert.equal(terminations().length, 0, 'the first streak does not count: 2 minutes since the heal not reached yet');
      await env.sleep(60 * SECOND);
      assert.equal((await status()).scaleDowns, 1);
    });
    assert.deepEqual(terminations(), [{ InstanceId: fallback, ShouldDecrementDesiredCapacity: true }]);
  });

  it('a PodDisruptionBudget that would be violated blocks the scale-down and says why', async function () {
    h.k8s.addBudget({ name: 'web-pdb', matchLabels: { app: 'web' }, disruptionsAllowed: 1 });
    await h.run(async () => {
      await startWithFallback();
      await env.sleep(4 * MINUTE);
      const blocked = await status();
      assert.equal(blocked.phase, 'blocked');
      assert.equal(blocked.lastSafety?.safe, false);
      assert.equal(blocked.lastSafety?.reason, 'PodDisruptionBudget default/web-pdb allows 1 disruption(s) but 2 of its pods are on node od-1');
    });
    assert.equal(terminations().length, 0);
    assert.equal(h.k8s.requestsMatching('PATCH', '/nodes/od-1').length, 0, 'the node is not even cordoned');
  });

  it('not enough room on the other nodes blocks the scale-down and says why', async function () {
    for (const name of ['spot-0', 'spot-1', 'spot-2', 'od-2']) {
      h.k8s.nodes.get(name)!.status!.allocatable = { cpu: '300m', memory: '1Gi' };
    }
    await h.run(async () => {
      await startWithFallback();
      await env.sleep(4 * MINUTE);
      const blocked = await status();
      assert.equal(blocked.phase, 'blocked');
      assert.match(blocked.lastSafety?.reason ?? '', /^not enough room: the pods need cpu 1000m, memory 1024Mi plus 10% buffer, the other schedulable nodes have cpu 950m, memory 4096Mi free$/);
    });
    assert.equal(terminations().length, 0);
  });

  it('a pod without a controller blocks the scale-down unless it is annotated safe to evict', async function () {
    h.k8s.addPod({ name: 'scratch', nodeName: 'od-1' });
    await h.run(async () => {
      await startWithFallback();
      await env.sleep(3 * MINUTE);
      assert.match((await status()).lastSafety?.reason ?? '', /pod default\/scratch has no controller to recreate it elsewhere/);
      assert.equal(terminations().length, 0);
      h.k8s.pods.get('default/scratch')!.metadata!.annotations = { 'spot-guard.io/safe-to-evict': 'true' };
      await handle().signal(checkNowSignal);
      await env.sleep(5 * SECOND);
      assert.equal((await status()).scaleDowns, 1);
    });
  });

  it('a pod annotated safe-to-evict "false" (Cluster Autoscaler\'s annotation too) blocks the scale-down and says why', async function () {
    const annotations = { 'cluster-autoscaler.kubernetes.io/safe-to-evict': 'false' };
    h.k8s.addPod({ name: 'batch-1', nodeName: 'od-1', ownerKind: 'ReplicaSet', ownerUid: 'rs-batch', annotations });
    await h.run(async () => {
      await startWithFallback();
      await env.sleep(3 * MINUTE);
      assert.match((await status()).lastSafety?.reason ?? '', /pod default\/batch-1 is annotated cluster-autoscaler.kubernetes.io\/safe-to-evict=false/);
      assert.equal(terminations().length, 0);
      assert.equal(h.k8s.requestsMatching('POST', '/eviction').length, 0, 'nothing evicted');
      h.k8s.pods.get('default/batch-1')!.metadata!.annotations = {};
      await handle().signal(checkNowSignal);
      await env.sleep(5 * SECOND);
      assert.equal((await status()).scaleDowns, 1);
    });
  });

  it('pause stops scale-downs and resume restarts them', async function () {
    await h.run(async () => {
      await startWithFallback();
      await handle().signal(pauseMonitorSignal, { reason: 'change freeze' });
      await env.sleep(5 * MINUTE);
      const paused = await status();
      assert.equal(paused.phase, 'paused');
      assert.equal(paused.pausedReason, 'change freeze');
      assert.ok(paused.healthySince, 'health is still watched while paused');
      assert.equal(terminations().length, 0);

      await handle().signal(resumeMonitorSignal);
      await env.sleep(5 * SECOND);
      const resumed = await status();
      assert.equal(resumed.paused, false);
      assert.equal(resumed.scaleDowns, 1, 'resume checks at once, and spot has long been stable');
    });
    assert.deepEqual(terminations(), [{ InstanceId: fallback, ShouldDecrementDesiredCapacity: true }]);
  });

  it('continue-as-new keeps tracked events and the healthy streak', async function () {
    await h.run(async () => {
      await env.client.workflow.start<typeof monitorWorkflow>('monitorWorkflow', {
        workflowId: monitorWorkflowId(h.spot, h.onDemand),
        taskQueue: h.taskQueue,
        args: [{ spotAsgName: h.spot, onDemandAsgName: h.onDemand, historyBound: 40 }],
      });
      await startWithFallback();
      await handle().signal(pauseMonitorSignal, { reason: 'hold the event for the test' });
      await env.sleep(45 * SECOND);
      const before = await status();
      const firstRun = (await handle().describe()).runId;
      await env.sleep(6 * MINUTE);
      const after = await status();
      assert.notEqual((await handle().describe()).runId, firstRun, 'the monitor continued as new');
      assert.equal(after.healthySince, before.healthySince, 'the healthy streak survives continue-as-new');
      assert.deepEqual(after.events, before.events, 'so do the tracked events');
      assert.equal(after.paused, true);
    });
  });

  it('forgets fallback events 10 minutes after they closed', async function () {
    h.k8s.setNodeReady('spot-2', false); // keep it from scaling down
    await h.run(async () => {
      await startWithFallback();
      await env.sleep(1 * MINUTE);
      h.aws.reclaim(fallback); // the fallback instance left the group some other way
      await env.sleep(1 * MINUTE);
      const closed = await status();
      assert.deepEqual(closed.events.map((e) => e.state), ['gone']);
      await env.sleep(9 * MINUTE);
      assert.equal((await status()).events.length, 1, 'kept until 10 minutes after it closed');
      await env.sleep(2 * MINUTE);
      assert.deepEqual((await status()).events, []);
    });
  });

  it('a failure between drain and terminate resumes the same node and never takes a second one', async function () {
    // The terminate call fails (as if the worker died right before it): the next cycle must finish od-1, not start on od-2.
    h.aws.fail('TerminateInstanceInAutoScalingGroup', 1, () => awsError('ValidationError', 'simulated crash before terminate', 400));
    await h.run(async () => {
      await startWithFallback();
      await env.sleep(135 * SECOND); // the first attempt, at the check after 2 minutes, failed
      const interrupted = await status();
      assert.equal(interrupted.inFlight?.instanceId, fallback);
      assert.equal(interrupted.inFlight?.step, 'terminating');
      await env.sleep(60 * SECOND);
      const done = await status();
      assert.equal(done.inFlight, undefined);
      assert.equal(done.scaleDowns, 1);
    });
    assert.deepEqual(terminations().map((c) => c.InstanceId), [fallback, fallback], 'tried twice, on the same instance');
    assert.deepEqual(h.aws.instanceIds(h.onDemand), [other]);
    assert.equal(h.aws.desired(h.onDemand), 1);
  });

  it('an instance that left the group while its scale-down was under way changes nothing', async function () {
    await h.run(async () => {
      await startStuckAtTermination(1);
      h.aws.reclaim(fallback); // terminated by an operator meanwhile, desired already adjusted by them
      await env.sleep(60 * SECOND);
      const done = await status();
      assert.equal(done.inFlight, undefined);
      assert.equal(done.scaleDowns, 0);
      assert.deepEqual(done.events.map((e) => e.state), ['gone']);
    });
    assert.equal(h.aws.desired(h.onDemand), 2, 'no bare desired - 1: the group would pick its own victim');
    assert.deepEqual(h.aws.instanceIds(h.onDemand), [other]);
  });

  it('moved pods that cannot run elsewhere: the node is made schedulable again and not terminated', async function () {
    h.settings = defaultFlowSettings(h.spot, h.onDemand, { SPOT_GUARD_POD_RESCHEDULE_TIMEOUT: '0' });
    h.k8s.evictedPodsStayPending = true; // e.g. a nodeSelector only on-demand nodes satisfy
    await h.run(async () => {
      await startWithFallback();
      await env.sleep(135 * SECOND);
      const released = await status();
      assert.equal(released.inFlight, undefined);
      assert.match(released.lastSafety?.reason ?? '', /^moved pods did not start elsewhere within 0 s/);
      assert.equal(released.events[0]?.failedAttempts, 1);
      await env.sleep(60 * SECOND);
      assert.match((await status()).lastSafety?.reason ?? '', /^2 pod\(s\) are Pending without a node/, 'and no second try while the pods wait');
    });
    assert.equal(terminations().length, 0);
    const od1 = h.k8s.nodes.get('od-1');
    assert.notEqual(od1?.spec?.unschedulable, true, 'uncordoned');
    assert.deepEqual(od1?.spec?.taints, [], 'scale-down taint removed');
  });

  it('spot health is checked again right before the termination: spot lost meanwhile, the fallback stays and its node is released', async function () {
    h.activityOverrides.awaitPodsRescheduled = async () => {
      h.aws.reclaim(spotIds[1]); // AWS takes a spot instance while the moved pods land
      return { settled: true, waitingFor: [] };
    };
    await h.run(async () => {
      await startWithFallback();
      await env.sleep(135 * SECOND);
      const after = await status();
      assert.equal(after.inFlight, undefined);
      assert.match(after.lastSafety?.reason ?? '', /^spot turned unhealthy right before the termination \(2 of 3 desired instances InService/);
      assert.equal(after.events[0]?.state, 'tracked', 'the fallback is still tracked');
    });
    assert.equal(terminations().length, 0);
    assert.notEqual(h.k8s.nodes.get('od-1')?.spec?.unschedulable, true, 'its node is schedulable again');
  });

  it('an activity that fails for good never fails the monitor: its node release is tried again next cycle, the fallback kept', async function () {
    h.activityOverrides.evictPods = async () => ({ evicted: [], skipped: [], left: [], remaining: ['default/web-1'], complete: false });
    let releaseFails = true;
    h.activityOverrides.releaseNode = async (input) => {
      if (releaseFails) throw ApplicationFailure.nonRetryable('simulated: the API server refuses the patch', 'Forbidden');
      return h.real!.releaseNode(input);
    };
    await h.run(async () => {
      await startWithFallback();
      await env.sleep(135 * SECOND); // the drain at the check after 2 minutes stayed incomplete: resumed next cycle
      assert.equal((await status()).inFlight?.step, 'draining');
      h.k8s.setNodeReady('spot-1', false); // spot turns unhealthy: the scale-down is given up, and its release fails
      await env.sleep(30 * SECOND);
      assert.equal((await handle().describe()).status.name, 'RUNNING', 'the monitor did not fail');
      const failing = await status();
      assert.equal(failing.inFlight?.step, 'releasing', 'the release is still to do');
      assert.deepEqual(failing.events.map((e) => [e.onDemandInstanceId, e.state]), [[fallback, 'tracked']], 'the fallback is kept');
      assert.match(failing.notes.at(-1) ?? '', /scale-down of \S+ stopped at step releasing, tried again next cycle: simulated: the API server refuses the patch/);
      assert.equal(h.k8s.nodes.get('od-1')?.spec?.unschedulable, true, 'not released yet');

      releaseFails = false;
      await env.sleep(30 * SECOND);
      const released = await status();
      assert.equal(released.inFlight, undefined);
      assert.match(released.lastSafety?.reason ?? '', /^spot turned unhealthy/);
      assert.deepEqual(released.events.map((e) => [e.onDemandInstanceId, e.state]), [[fallback, 'tracked']]);
    });
    assertOd1Released();
  });

  it('a scale-down that turns unsafe halfway is given up at once and its node released', async function () {
    let drains = 0;
    h.activityOverrides.evictPods = async (input) => {
      if (++drains === 1) return { evicted: [], skipped: [], left: [], remaining: ['default/web-1', 'default/web-2'], complete: false };
      return h.real!.evictPods(input);
    };
    await h.run(async () => {
      await startWithFallback();
      await env.sleep(135 * SECOND); // the first drain stayed incomplete: the node is cordoned, resumed next cycle
      assert.equal((await status()).inFlight?.step, 'draining');
      assert.equal(h.k8s.nodes.get('od-1')?.spec?.unschedulable, true);
      h.k8s.addBudget({ name: 'web-pdb', matchLabels: { app: 'web' }, disruptionsAllowed: 1 }); // a budget appears meanwhile
      await env.sleep(30 * SECOND);
      const after = await status();
      assert.equal(after.inFlight, undefined);
      assert.equal(after.lastSafety?.reason, 'turned unsafe: PodDisruptionBudget default/web-pdb allows 1 disruption(s) but 2 of its pods are on node od-1');
      assert.equal(after.events[0]?.failedAttempts, 1);
    });
    assert.equal(drains, 1, 'not drained again');
    assertOd1Released();
  });

  it('a stuck scale-down (every termination refused) is given up at its time limit, 33.5 minutes with the defaults, and its node released', async function () {
    await h.run(async () => {
      const started = await startStuckAtTermination(1000);
      const giveUpAt = Date.parse(started.inFlight?.giveUpAt ?? '');
      // 3 drains of 300 s, each with a 30 s check interval, the 120 s wait for the moved pods, 15 min for the termination's answer.
      assert.equal(giveUpAt - Date.parse(started.inFlight?.startedAt ?? ''), 2010 * SECOND);
      await env.sleep(giveUpAt - (await env.currentTimeMs()) - 20 * SECOND);
      const stuck = await status();
      assert.equal(stuck.inFlight?.step, 'terminating', 'tried again every cycle until then');
      assert.ok(terminations().length > 50);
      assert.equal(h.k8s.nodes.get('od-1')?.spec?.unschedulable, true);
      await env.sleep(30 * SECOND);
      const after = await status();
      assert.equal(after.inFlight, undefined);
      assert.match(after.lastSafety?.reason ?? '', /^not done within 2010 s of its start \(at step terminating\)/);
      assert.equal(after.events[0]?.failedAttempts, 1);
      assert.equal(after.events[0]?.state, 'tracked');
      assert.notEqual(h.k8s.nodes.get('od-1')?.spec?.unschedulable, true, 'released');
    });
  });

  it('spot turning unhealthy while a termination is stuck gives the scale-down up at once', async function () {
    await h.run(async () => {
      await startStuckAtTermination(1000);
      h.k8s.setNodeReady('spot-1', false);
      await env.sleep(30 * SECOND);
      const after = await status();
      assert.equal(after.inFlight, undefined);
      assert.match(after.lastSafety?.reason ?? '', /^spot turned unhealthy \(node spot-1/);
    });
    assert.notEqual(h.k8s.nodes.get('od-1')?.spec?.unschedulable, true, 'released');
  });

  it('a node an operator had cordoned stays cordoned when its scale-down is given up; only the scale-down taint comes off', async function () {
    h.settings = defaultFlowSettings(h.spot, h.onDemand, { SPOT_GUARD_POD_RESCHEDULE_TIMEOUT: '0' });
    h.k8s.evictedPodsStayPending = true;
    h.k8s.nodes.get('od-1')!.spec!.unschedulable = true; // the operator's cordon, before Spot Guard
    await h.run(async () => {
      await startWithFallback();
      await env.sleep(135 * SECOND);
      assert.match((await status()).lastSafety?.reason ?? '', /^moved pods did not start elsewhere within 0 s/);
    });
    assert.equal(terminations().length, 0);
    const od1 = h.k8s.nodes.get('od-1');
    assert.equal(od1?.spec?.unschedulable, true, 'still cordoned, as the operator left it');
    assert.deepEqual(od1?.spec?.taints, [], 'scale-down taint removed');
  });

  it('never goes below the on-demand group\'s MinSize', async function () {
    h.aws.groups.get(h.onDemand)!.min = 2;
    await h.run(async () => {
      await startWithFallback();
      await env.sleep(5 * MINUTE);
    });
    assert.equal(terminations().length, 0);
    assert.equal(h.k8s.requestsMatching('POST', '/eviction').length, 0);
  });

  it('the on-demand group reaching its MinSize between the pick and the termination: given up, node released, not tried again', async function () {
    h.activityOverrides.awaitPodsRescheduled = async () => {
      h.aws.groups.get(h.onDemand)!.min = 2; // an operator raises MinSize while the moved pods land
      return { settled: true, waitingFor: [] };
    };
    await h.run(async () => {
      await startWithFallback();
      await env.sleep(135 * SECOND);
      const after = await status();
      assert.equal(after.inFlight, undefined, JSON.stringify(after.notes));
      assert.match(after.lastSafety?.reason ?? '', /^the on-demand group reached its MinSize before the termination: .*below its MinSize \(2\)/);
      assert.equal(after.events[0]?.state, 'tracked');
      assert.equal(after.events[0]?.failedAttempts, 1);
      assert.match(after.events[0]?.lastGivenUp ?? '', /reached its MinSize/, 'the event keeps why');
      const patches = h.k8s.requestsMatching('PATCH', '/nodes/od-1').length;
      await env.sleep(10 * MINUTE);
      assert.equal(h.k8s.requestsMatching('PATCH', '/nodes/od-1').length, patches, 'the node is not taken again');
      assert.match((await status()).events[0]?.lastGivenUp ?? '', /reached its MinSize/);
    });
    assertOd1Released();
  });

  it('never touches on-demand nodes it did not launch, unless configured to', async function () {
    await h.run(async () => {
      await ensureMonitor(env.client, h.taskQueue, h.spot, h.onDemand);
      await env.sleep(5 * MINUTE);
      assert.equal((await status()).phase, 'idle');
    });
    assert.equal(terminations().length, 0);
  });
});
