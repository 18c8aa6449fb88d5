// Books per instance, on the time-skipping test server with the real activities, fake AWS groups and a fake
// Kubernetes API: every notice for a live instance acts, even after its run closed, and every +1 is settled exactly
// once, whoever removes the instance (Spot Guard, an operator with decrement, AWS) and whenever.
import assert from 'node:assert/strict';
import { TerminateInstanceInAutoScalingGroupCommand } from '@aws-sdk/client-auto-scaling';
import { WorkflowFailedError, type WorkflowHandle, WorkflowNotFoundError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { reportInterruption, requestRebalance } from '../signaler/workflow-requests.js';
import { capacityStatusQuery } from '../workflows/capacity/api.js';
import { capacityWorkflowId, rebalanceWorkflowId } from '../workflows/shared/ids.js';
import type { rebalanceWorkflow } from '../workflows/rebalance/workflow.js';
import { awsError, INSUFFICIENT_CAPACITY } from './fakes/auto-scaling.js';
import { defaultFlowSettings, Harness } from './helpers/harness.js';
import { recordHistory } from './helpers/histories.js';
import { waitForStatus } from './helpers/workflows.js';
import { until } from '../scripts/peers/wait.js';
import { createDevServerEnv, createTimeSkippingEnv } from './helpers/temporal.js';

let env: TestWorkflowEnvironment;
let h: Harness;
let atRisk: string;
let spotInstances: string[];

/** Every scenario's world: a spot group of 3 (node-a, the at-risk one, runs a ReplicaSet's pod; node-b) and an empty on-demand group. */
async function setUp(environment: TestWorkflowEnvironment): Promise<void> {
  env = environment;
  h = await new Harness(env).start();
  spotInstances = h.aws.addGroup(h.spot, { desired: 3, max: 10 });
  h.aws.addGroup(h.onDemand, { desired: 0, max: 5 });
  atRisk = spotInstances[0] ?? '';
  h.k8s.addNode({ name: 'node-a', instanceId: atRisk });
  h.k8s.addNode({ name: 'node-b', instanceId: spotInstances[1] ?? '' });
  h.k8s.addPod({ name: 'web-1', nodeName: 'node-a', ownerKind: 'ReplicaSet' });
}

const start = (nodeName = 'node-a') => requestRebalance(env.client, h.taskQueue, { instanceId: atRisk, nodeName });
const handle = (): WorkflowHandle<typeof rebalanceWorkflow> => env.client.workflow.getHandle(rebalanceWorkflowId(atRisk));
const books = async () => (await env.client.workflow.getHandle(capacityWorkflowId(h.spot)).query(capacityStatusQuery)).books.map((b) => b.instanceId);
const settings = (overrides: Record<string, string>) => {
  h.settings = defaultFlowSettings(h.spot, h.onDemand, overrides);
};
/**
 * The run's result once it ended, waited for in real time: a late instance is found by a poll once a minute, and the
 * test server was seen not to skip time reliably once a held run had been woken by one.
 */
const resultInRealTime = async () => {
  await until('the run to end', async () => (await handle().describe()).status.name !== 'RUNNING', 150_000);
  return handle().result();
};
const noCapacityAnywhere = () => {
  h.aws.setLaunch(h.spot, { kind: 'capacity-error', message: INSUFFICIENT_CAPACITY });
  h.aws.setLaunch(h.onDemand, { kind: 'capacity-error', message: INSUFFICIENT_CAPACITY });
};

describe('books per instance (time-skipping)', function () {
  beforeEach(async function () {
    await setUp(await createTimeSkippingEnv());
  });
  afterEach(async function () {
    await h?.stop();
    await env?.teardown();
  });

  it('a held run that ended kept, then an interruption notice: a new run drains the node, with no second +1 and one decrement', async function () {
    settings({ SPOT_GUARD_RECLAIM_WAIT: '5m' });
    noCapacityAnywhere();
    await h.run(async () => {
      const held = await start();
      assert.equal((await handle().result()).instanceFate, 'kept');
      assert.equal(h.aws.desired(h.spot), 4, 'held on purpose: the group stays raised for it');
      assert.deepEqual(await books(), [atRisk]);
      assert.deepEqual(h.k8s.nodes.get('node-a')?.spec?.taints ?? [], [], 'the run that ended gave its node back');

      const late = await reportInterruption(env.client, h.taskQueue, { instanceId: atRisk, nodeName: 'node-a' }, { action: 'terminate', time: '2026-12-02T16:00:00Z' });
      const result = await late.result();
      assert.notEqual(late.signaledRunId, held.runId);
      assert.equal(result.drained, true);
      assert.equal(result.instanceFate, 'terminated');
      assert.deepEqual(await books(), []);
    });
    assert.deepEqual(h.k8s.podsOn('node-a'), []);
    assert.deepEqual(h.aws.callsOf('SetDesiredCapacity').filter((c) => c.AutoScalingGroupName === h.spot).map((c) => c.DesiredCapacity), [4], 'no second +1');
    assert.deepEqual(h.aws.callsOf('TerminateInstanceInAutoScalingGroup'), [{ InstanceId: atRisk, ShouldDecrementDesiredCapacity: true }]);
    assert.equal(h.aws.desired(h.spot), 3);
  });

  it('an operator terminates a kept instance with decrement: that is its one decrement, and no second one follows', async function () {
    settings({ SPOT_GUARD_TERMINATE_DRAINED: 'false' });
    await h.run(async () => {
      await start();
      await waitForStatus(handle(), (s) => s.phase === 'awaiting-reclaim');
      assert.equal(h.aws.desired(h.spot), 4);
      await h.aws.client.send(new TerminateInstanceInAutoScalingGroupCommand({ InstanceId: atRisk, ShouldDecrementDesiredCapacity: true }));
      const result = await handle().result();
      assert.equal(result.instanceFate, 'removed-by-someone-else');
      assert.deepEqual(await books(), []);
    });
    assert.equal(h.aws.desired(h.spot), 3);
    assert.equal(h.aws.instanceIds(h.spot).length, 3, 'no running node taken by a second decrement');
    assert.deepEqual(h.aws.callsOf('SetDesiredCapacity').map((c) => c.DesiredCapacity), [4]);
  });

  it('AWS takes an instance after its run ended kept: the capacity workflow still brings desired back', async function () {
    settings({ SPOT_GUARD_TERMINATE_DRAINED: 'false', SPOT_GUARD_RECLAIM_WAIT: '2m' });
    await h.run(async () => {
      await start();
      assert.equal((await handle().result()).instanceFate, 'kept');
      const node = h.k8s.nodes.get('node-a');
      assert.deepEqual([node?.spec?.taints ?? [], node?.spec?.unschedulable], [[], false], 'drained, not reclaimed in time: given back untainted and schedulable');
      assert.equal(h.aws.desired(h.spot), 4);
      h.aws.reclaim(atRisk);
      await env.sleep('2 minutes');
      assert.deepEqual(await books(), []);
    });
    assert.equal(h.aws.desired(h.spot), 3);
    assert.deepEqual(h.aws.callsOf('SetDesiredCapacity').map((c) => c.DesiredCapacity), [4, 3]);
  });

  it('a node an operator had cordoned stays cordoned when its run ends kept; only the taint comes off', async function () {
    settings({ SPOT_GUARD_TERMINATE_DRAINED: 'false', SPOT_GUARD_RECLAIM_WAIT: '2m' });
    const node = h.k8s.nodes.get('node-a');
    if (node) node.spec = { ...node.spec, unschedulable: true };
    await h.run(async () => {
      await start();
      assert.equal((await handle().result()).instanceFate, 'kept');
    });
    const after = h.k8s.nodes.get('node-a');
    assert.deepEqual([after?.spec?.taints ?? [], after?.spec?.unschedulable], [[], true]);
  });

  it('AWS takes a kept instance and the group launches its replacement first: that replacement goes, not a running node', async function () {
    settings({ SPOT_GUARD_TERMINATE_DRAINED: 'false', SPOT_GUARD_RECLAIM_WAIT: '2m' });
    await h.run(async () => {
      await start();
      assert.equal((await handle().result()).instanceFate, 'kept');
      const running = h.aws.instanceIds(h.spot).filter((id) => id !== atRisk);
      h.aws.reclaim(atRisk);
      // The group notices first and launches anew (any later change of desired reconciles it).
      await h.aws.client.send(new TerminateInstanceInAutoScalingGroupCommand({ InstanceId: running[0], ShouldDecrementDesiredCapacity: false }));
      const launched = h.aws.instanceIds(h.spot).filter((id) => !running.includes(id));
      assert.equal(launched.length, 2, 'two launched: for the reclaimed one and for the one terminated without decrement');
      await env.sleep('2 minutes');
      assert.deepEqual(await books(), []);
      const terminated = h.aws.callsOf('TerminateInstanceInAutoScalingGroup').slice(1);
      assert.equal(terminated.length, 1);
      assert.ok(launched.includes(String(terminated[0]?.InstanceId)), 'one of the new launches went');
      assert.equal(terminated[0]?.ShouldDecrementDesiredCapacity, true);
      for (const id of running.slice(1)) assert.ok(h.aws.instanceIds(h.spot).includes(id), `running ${id} stays`);
    });
    assert.equal(h.aws.desired(h.spot), 3);
  });

  it('a request naming another instance\'s node is rejected, and the correct request that follows protects the instance', async function () {
    await h.run(async () => {
      await start('node-b');
      const failure = await handle().result().then(() => undefined, (error: WorkflowFailedError) => error.cause?.message);
      assert.match(String(failure), /rejected, nothing changed/);
      await start('node-a');
      const result = await handle().result();
      assert.equal(result.drained, true);
      assert.equal(result.instanceFate, 'terminated');
    });
    assert.deepEqual(h.aws.callsOf('SetDesiredCapacity').map((c) => c.DesiredCapacity), [4]);
    assert.equal(h.aws.desired(h.spot), 3);
  });

  it('an incomplete drain waits in awaiting-reclaim, and an interruption notice then drains at once and retires the instance', async function () {
    settings({ SPOT_GUARD_DRAIN_TIMEOUT: '10' });
    h.k8s.pdbBlocks.set('default/web-1', Number.MAX_SAFE_INTEGER);
    await h.run(async () => {
      await start();
      const waiting = await waitForStatus(handle(), (s) => s.phase === 'awaiting-reclaim', 60_000);
      assert.equal(waiting.drain?.complete, false);
      h.k8s.pdbBlocks.delete('default/web-1');
      await reportInterruption(env.client, h.taskQueue, { instanceId: atRisk, nodeName: 'node-a' }, { action: 'terminate', time: '2026-12-02T16:00:00Z' });
      const result = await handle().result();
      assert.equal(result.drained, true);
      assert.equal(result.instanceFate, 'terminated');
      assert.ok(result.notes.some((n) => n.includes('draining again (attempt 2): an interruption notice or drainNow arrived')), 'drained because of the notice, not the 10-minute retry');
    });
    assert.deepEqual(h.k8s.podsOn('node-a'), []);
    assert.deepEqual(h.aws.callsOf('TerminateInstanceInAutoScalingGroup'), [{ InstanceId: atRisk, ShouldDecrementDesiredCapacity: true }]);
    assert.equal(h.aws.desired(h.spot), 3);
  });

  it('a late spot instance ends a hold; the on-demand increase that never launched is given back after its late watch', async function () {
    this.timeout(240_000); // the late poll, once a minute, in real time
    noCapacityAnywhere();
    await h.run(async () => {
      await start();
      await waitForStatus(handle(), (s) => s.phase === 'holding');
      h.aws.setLaunch(h.spot, { kind: 'in-service-after-looks', looks: 1 });
      h.aws.relaunch(h.spot);
      const result = await resultInRealTime();
      assert.equal(result.replacement, 'spot');
      assert.equal(result.instanceFate, 'terminated');
      assert.equal(h.aws.desired(h.onDemand), 1, 'still watched for a late instance');
      await env.sleep('61 minutes');
      assert.equal(h.aws.desired(h.onDemand), 0);
    });
    assert.deepEqual(h.fallbackReports, []);
    assert.equal(h.aws.desired(h.spot), 3);
    assert.equal(h.aws.instanceIds(h.spot).length, 3);
  });

  it('a notice for an instance already leaving its group is refused with nothing changed', async function () {
    const leaving = h.aws.groups.get(h.spot)?.instances.find((i) => i.instanceId === atRisk);
    assert.ok(leaving);
    leaving.lifecycleState = 'Terminating:Wait';
    await h.run(async () => {
      await start();
      const failure = await handle().result().then(() => 'completed', (error: WorkflowFailedError) => String(error.cause?.message));
      assert.match(failure, new RegExp(`rejected, nothing changed: instance ${atRisk} is already leaving`));
    });
    assert.equal(h.aws.callsOf('SetDesiredCapacity').length, 0);
    assert.equal(h.k8s.requestsMatching('PATCH', '/nodes/').length, 0);
  });

  for (const relaunch of [false, true]) {
    it(`AWS takes the instance between the notice and the +1${relaunch ? ', the group relaunching at once' : ''}: no +1 is made for it, no running node goes`, async function () {
      h.activityOverrides.verifyProtectedInstance = async (input) => {
        const verified = await (h.real as NonNullable<typeof h.real>).verifyProtectedInstance(input);
        h.aws.reclaim(atRisk, { relaunch }); // right after the verification, before the capacity workflow looks at the group
        return verified;
      };
      const running = spotInstances.filter((id) => id !== atRisk);
      await h.run(async () => {
        await start();
        const result = await handle().result();
        assert.equal(result.replacement, 'not-needed');
        assert.equal(result.instanceFate, 'not-in-group');
        assert.deepEqual(await books(), []);
      });
      assert.equal(h.aws.callsOf('SetDesiredCapacity').length, 0, 'the spot group replaces its own instance: no +1, no decrement');
      assert.equal(h.aws.desired(h.spot), 3, 'back at its size: three instances for three');
      assert.equal(h.aws.desired(h.onDemand), 0, 'no on-demand fallback either');
      for (const id of running) assert.ok(h.aws.instanceIds(h.spot).includes(id), `running ${id} stays`);
    });
  }

  /** AWS takes the kept instance and the group relaunches at once: the one instance too many, as desired counts the +1. */
  async function reclaimKeptAndRelaunch(): Promise<string> {
    await start();
    await waitForStatus(handle(), (s) => s.phase === 'awaiting-reclaim');
    assert.equal(h.aws.desired(h.spot), 4);
    const before = h.aws.instanceIds(h.spot);
    // Pending until the test says otherwise: no node but the one the test gives it.
    h.aws.setLaunch(h.spot, { kind: 'never' });
    h.aws.reclaim(atRisk, { relaunch: true });
    const [relaunched] = h.aws.instanceIds(h.spot).filter((id) => !before.includes(id));
    assert.ok(relaunched, 'the group relaunched');
    return relaunched;
  }

  /** Its node registers (the instance still Pending in the group) and the scheduler places a pod on it. */
  function nodeWithPodFor(instanceId: string): void {
    h.k8s.addNode({ name: 'node-r', instanceId });
    h.k8s.addPod({ name: 'web-2', nodeName: 'node-r', ownerKind: 'ReplicaSet' });
  }

  const surplusRun = (instanceId: string) => env.client.workflow.getHandle<typeof rebalanceWorkflow>(rebalanceWorkflowId(instanceId));

  /**
   * The kept instance's run ends reclaimed, the surplus run ends drained and terminated (though SPOT_GUARD_TERMINATE_DRAINED
   * is false: no reclaim comes for it), and no book is left.
   */
  async function assertDrainedAsSurplus(surplus: string): Promise<void> {
    // Answered once the spot group settled its book, after the surplus run had started.
    assert.equal((await handle().result()).instanceFate, 'reclaimed-by-aws');
    const result = await surplusRun(surplus).result();
    assert.deepEqual([result.replacement, result.drained, result.instanceFate], ['surplus', true, 'terminated']);
    assert.deepEqual(await books(), []);
  }

  /** Once over: the pod was evicted before the one terminate with decrement, and desired is back at its size. */
  function assertOneDecrementAfterTheDrain(surplus: string, terminateCalls: number): void {
    assert.equal(h.k8s.requestsMatching('POST', '/pods/web-2/eviction').length, 1, 'drained before it went');
    const terminations = h.aws.callsOf('TerminateInstanceInAutoScalingGroup');
    assert.deepEqual(terminations.at(-1), { InstanceId: surplus, ShouldDecrementDesiredCapacity: true });
    assert.equal(terminations.length, terminateCalls);
    assert.deepEqual(h.aws.callsOf('SetDesiredCapacity').map((c) => c.DesiredCapacity), [4], 'the +1, no second one, and no other change than the decrement');
    assert.equal(h.aws.desired(h.spot), 3);
  }

  it('the group relaunches for a kept instance AWS took, and its replacement already carries pods: it is drained before it goes, desired ends at its size', async function () {
    settings({ SPOT_GUARD_TERMINATE_DRAINED: 'false' });
    let surplus = '';
    await h.run(async () => {
      surplus = await reclaimKeptAndRelaunch();
      nodeWithPodFor(surplus); // before the spot group's next look
      await assertDrainedAsSurplus(surplus);
      await recordHistory(surplusRun(surplus), 'rebalance-surplus-drained');
      await recordHistory(env.client.workflow.getHandle(capacityWorkflowId(h.spot)), 'capacity-surplus-replacement');
    });
    assertOneDecrementAfterTheDrain(surplus, 1);
  });

  it('the terminate of a replacement with no node fails, and its node (with a pod) registers before the retry: the retry drains it instead', async function () {
    settings({ SPOT_GUARD_TERMINATE_DRAINED: 'false' });
    let surplus = '';
    await h.run(async () => {
      surplus = await reclaimKeptAndRelaunch();
      h.aws.fail('TerminateInstanceInAutoScalingGroup', 1, () => {
        nodeWithPodFor(surplus); // between the failed call and its retry
        return awsError('ServiceUnavailable', 'Service Unavailable', 503);
      });
      await assertDrainedAsSurplus(surplus);
    });
    assertOneDecrementAfterTheDrain(surplus, 2); // the failed call, then the drained instance's: no blind retry
  });

  it('a notice for the group\'s own replacement, which carries a kept instance\'s book: no second +1, its run drains it as the surplus', async function () {
    settings({ SPOT_GUARD_TERMINATE_DRAINED: 'false' });
    let surplus = '';
    await h.run(async () => {
      surplus = await reclaimKeptAndRelaunch();
      nodeWithPodFor(surplus);
      // Its own notice, well before the kept run's next look (a minute): its +1 request's look at the group moves the
      // book to it, and the surplus drain then started joins this very run.
      await requestRebalance(env.client, h.taskQueue, { instanceId: surplus, nodeName: 'node-r' });
      await assertDrainedAsSurplus(surplus);
      const { recent } = await env.client.workflow.getHandle(capacityWorkflowId(h.spot)).query(capacityStatusQuery);
      const answer = recent.find((r) => r.requestId === `${rebalanceWorkflowId(surplus)}/spot`);
      assert.equal(answer?.result.status, 'surplus', 'its +1 request answered: desired is raised for it already');
    });
    assertOneDecrementAfterTheDrain(surplus, 1);
    assert.equal(h.aws.desired(h.onDemand), 0, 'no on-demand fallback either');
  });

  it('the group relaunches for a kept instance AWS took, and its replacement has no node yet: it is terminated at once with decrement', async function () {
    settings({ SPOT_GUARD_TERMINATE_DRAINED: 'false' });
    let surplus = '';
    await h.run(async () => {
      surplus = await reclaimKeptAndRelaunch();
      assert.equal((await handle().result()).instanceFate, 'reclaimed-by-aws');
      assert.deepEqual(await books(), []);
    });
    assert.deepEqual(h.aws.callsOf('TerminateInstanceInAutoScalingGroup'), [{ InstanceId: surplus, ShouldDecrementDesiredCapacity: true }]);
    assert.equal(h.aws.desired(h.spot), 3);
    await assert.rejects(env.client.workflow.getHandle(rebalanceWorkflowId(surplus)).describe(), WorkflowNotFoundError, 'no drain needed, none started');
  });
});

// The late on-demand scenario waits in real time anyway (the late poll is once a minute), and on the time-skipping test
// server it stalled in 4 runs of 6: when the held run asks the spot group for its drain slot, the signal comes within
// milliseconds of the spot group's books look (both are a minute after the hold began), so that look's timer comes due
// while the workflow task woken by the signal is in progress; the task's completion cancels the timer, the test server
// refuses it ("invalid history builder state for action") and leaves the task started for good, and the spot group's
// capacity workflow never answers again. The real server takes the cancel (see createDevServerEnv).
describe('books per instance (Temporal dev server)', function () {
  let devServer: Awaited<ReturnType<typeof createDevServerEnv>> | undefined;
  beforeEach(async function () {
    devServer = await createDevServerEnv();
    await setUp(devServer.env);
  });
  afterEach(async function () {
    await h?.stop();
    await devServer?.teardown();
    devServer = undefined;
  });

  it('a late on-demand instance ends a hold: the node is drained, and the instance goes to the monitor as a fallback', async function () {
    this.timeout(240_000); // the late poll, once a minute, in real time
    noCapacityAnywhere();
    await h.run(async () => {
      await start();
      await waitForStatus(handle(), (s) => s.phase === 'holding');
      h.aws.setLaunch(h.onDemand, { kind: 'in-service-after-looks', looks: 1 });
      h.aws.relaunch(h.onDemand); // capacity is back, after the 120 s wait ended
      const result = await resultInRealTime();
      const [late] = h.aws.instanceIds(h.onDemand);
      assert.equal(result.replacement, 'on-demand');
      assert.equal(result.replacementInstanceId, late);
      assert.equal(result.drained, true);
      assert.equal(result.instanceFate, 'terminated');
      assert.deepEqual(h.fallbackReports.map((r) => [r.onDemandInstanceId, r.warnedInstanceId]), [[late, atRisk]]);
    });
    assert.deepEqual(h.k8s.podsOn('node-a'), []);
    assert.equal(h.aws.desired(h.spot), 3);
    assert.equal(h.aws.desired(h.onDemand), 1, 'tracked by the monitor, which removes it once spot is healthy');
  });
});
