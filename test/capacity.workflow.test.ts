// The per-group capacity workflow: requests by signal applied one batch at a time, absolute targets, deduplication
// that survives continue-as-new, MaxSize, and the retirement of drained or reclaimed instances.
import assert from 'node:assert/strict';
import { MockActivityEnvironment, type TestWorkflowEnvironment } from '@temporalio/testing';
import { createAutoScalingActivities } from '../activities/auto-scaling.js';
import { capacityStatusQuery, increaseCapacityRequestSignal, releaseDrainSlotSignal } from '../workflows/capacity/api.js';
import type { capacityWorkflow } from '../workflows/capacity/workflow.js';
import { capacityWorkflowId } from '../workflows/shared/ids.js';
import { awsError } from './fakes/auto-scaling.js';
import { CapacityRequester } from './helpers/capacity-requester.js';
import { Harness } from './helpers/harness.js';
import { recordHistory } from './helpers/histories.js';
import { until } from '../scripts/peers/wait.js';
import { activityNames } from './helpers/workflows.js';
import { createTimeSkippingEnv } from './helpers/temporal.js';

describe('capacity workflow (one per Auto Scaling group)', function () {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  let ask: CapacityRequester;

  // A server per test: see createTimeSkippingEnv.
  beforeEach(async function () {
    env = await createTimeSkippingEnv();
  });
  afterEach(async function () {
    await env?.teardown();
  });
  beforeEach(async function () {
    h = await new Harness(env).start();
    ask = new CapacityRequester(h);
  });
  afterEach(async function () {
    await h.stop();
  });

  const handle = () => env.client.workflow.getHandle<typeof capacityWorkflow>(capacityWorkflowId(h.spot));

  it('serializes concurrent increases: 5 requests at once raise desired by exactly 5', async function () {
    h.aws.addGroup(h.spot, { desired: 2, max: 20 });
    const answers = await h.run(() =>
      Promise.all([1, 2, 3, 4, 5].map((n) => ask.increase(`node-${n}`))),
    );
    assert.equal(h.aws.desired(h.spot), 7);
    assert.ok(answers.every((a) => a.status === 'granted'));
    // Each SetDesiredCapacity is an absolute target; batches coalesce requests that arrived together.
    const targets = h.aws.callsOf('SetDesiredCapacity').map((c) => c.DesiredCapacity as number);
    assert.equal(targets.at(-1), 7);
    assert.deepEqual([...targets].sort((a, b) => a - b), targets, 'targets only go up');
  });

  it('a repeated request id is answered again with the first answer and changes nothing', async function () {
    h.aws.addGroup(h.spot, { desired: 2, max: 20 });
    const [first, again] = await h.run(async () => {
      await ask.increase('node-a/spot');
      await ask.increase('node-a/spot');
      await until('the second answer', () => ask.answersTo('capacityAnswer', 'node-a/spot').length === 2);
      return ask.answersTo('capacityAnswer', 'node-a/spot');
    });
    assert.deepEqual(again, first);
    assert.equal(h.aws.desired(h.spot), 3);
    assert.equal(h.aws.callsOf('SetDesiredCapacity').length, 1);
  });

  it('dry run answers as if it changed the group, but keeps its pretend changes out of the records: the same requests act for real later', async function () {
    const [warned, drained] = h.aws.addGroup(h.spot, { desired: 3, max: 10 }) as [string, string];
    // The worker's SPOT_GUARD_DRY_RUN, switched off mid-test: the same capacity workflow, first dry, then for real.
    let dryRun = true;
    const dry = createAutoScalingActivities(h.aws.client, { dryRun: true });
    const real = createAutoScalingActivities(h.aws.client);
    h.activityOverrides.setDesiredCapacity = (input) => (dryRun ? dry : real).setDesiredCapacity(input);
    h.activityOverrides.terminateInstanceInGroup = (input) => (dryRun ? dry : real).terminateInstanceInGroup(input);
    await h.run(async () => {
      assert.equal((await ask.increase('raise-1', { forInstanceId: warned })).status, 'granted');
      assert.deepEqual(await ask.retire({ requestId: 'retire-1', instanceId: drained, terminate: true }), { status: 'terminated', desiredAfter: 2 });
      const status = await handle().query(capacityStatusQuery);
      assert.deepEqual([status.appliedChanges, status.books, status.recent.map((r) => r.requestId)], [0, [], []], 'nothing recorded');
      assert.equal(h.aws.desired(h.spot), 3);
      assert.equal(h.aws.callsOf('SetDesiredCapacity').length + h.aws.callsOf('TerminateInstanceInAutoScalingGroup').length, 0);

      dryRun = false;
      await ask.increase('raise-1', { forInstanceId: warned });
      await until('the real answer to raise-1', () => ask.answersTo('capacityAnswer', 'raise-1').length === 2);
      await ask.retire({ requestId: 'retire-1', instanceId: drained, terminate: true });
      await until('the real answer to retire-1', () => ask.answersTo('retirementAnswer', 'retire-1').length === 2);
      assert.deepEqual(ask.answersTo('retirementAnswer', 'retire-1')[1], { requestId: 'retire-1', status: 'terminated', desiredAfter: 3 });
      assert.deepEqual((await handle().query(capacityStatusQuery)).books.map((b) => b.instanceId), [warned]);
    });
    assert.equal(h.aws.desired(h.spot), 3, 'raised to 4 for real, lowered with the drained instance');
    assert.deepEqual(h.aws.callsOf('TerminateInstanceInAutoScalingGroup'), [{ InstanceId: drained, ShouldDecrementDesiredCapacity: true }]);
  });

  it('grants increases in arrival order while MaxSize allows, and says so for the rest', async function () {
    h.aws.addGroup(h.spot, { desired: 4, max: 5 });
    const [a, b] = await h.run(async () => [
      await ask.increase('a'),
      await ask.increase('b'),
    ]);
    assert.equal(a?.status, 'granted');
    assert.deepEqual(b, { status: 'at-max-size', desired: 5, maxSize: 5 });
    assert.equal(h.aws.desired(h.spot), 5);
  });

  it('continues as new with its memory of answered requests: no duplicate across runs', async function () {
    h.aws.addGroup(h.spot, { desired: 1, max: 50 });
    await h.run(async () => {
      // A small history bound forces several continue-as-new within this test.
      await env.client.workflow.start<typeof capacityWorkflow>('capacityWorkflow', {
        workflowId: capacityWorkflowId(h.spot),
        taskQueue: h.taskQueue,
        args: [{ asgName: h.spot, historyBound: 25 }],
      });
      const firstRun = (await handle().describe()).runId;
      const first = await ask.increase('req-0');
      for (let n = 1; n <= 8; n++) await ask.increase(`req-${n}`);
      const laterRun = (await handle().describe()).runId;
      assert.notEqual(laterRun, firstRun, 'the workflow continued as new');

      await ask.increase('req-0');
      await until('req-0 answered again', () => ask.answersTo('capacityAnswer', 'req-0').length === 2);
      const { requestId: _id, ...repeated } = ask.answersTo('capacityAnswer', 'req-0')[1] ?? { requestId: '' };
      assert.deepEqual(repeated, first, 'the first answer, remembered across runs');
      const status = await handle().query(capacityStatusQuery);
      assert.equal(status.appliedChanges, 9);
      assert.ok(status.recent.some((r) => r.requestId === 'req-8'));
      await recordHistory(env.client.workflow.getHandle(capacityWorkflowId(h.spot), firstRun), 'capacity-continue-as-new');
    });
    assert.equal(h.aws.desired(h.spot), 10);
    assert.equal(h.aws.callsOf('SetDesiredCapacity').length, 9);
  });

  it('retires a running instance with decrement, and settles the books for one AWS took', async function () {
    const [kept, drained, reclaimed] = h.aws.addGroup(h.spot, { desired: 3, max: 5 }) as [string, string, string];
    await h.run(async () => {
      await ask.increase('raise-1', { forInstanceId: drained });
      await ask.increase('raise-2', { forInstanceId: reclaimed });
      assert.equal(h.aws.desired(h.spot), 5);

      const watch = await ask.retire({ requestId: 'watch-1', instanceId: kept, terminate: false });
      assert.deepEqual(watch, { status: 'still-running' });

      const terminated = await ask.retire({ requestId: 'retire-1', instanceId: drained, terminate: true });
      assert.deepEqual(terminated, { status: 'terminated', desiredAfter: 4 });

      h.aws.reclaim(reclaimed);
      const settled = await ask.retire({ requestId: 'retire-2', instanceId: reclaimed, terminate: false });
      assert.deepEqual(settled, { status: 'reclaimed-by-aws', desiredAfter: 3 });
    });
    assert.equal(h.aws.desired(h.spot), 3);
    assert.deepEqual(h.aws.callsOf('TerminateInstanceInAutoScalingGroup'), [{ InstanceId: drained, ShouldDecrementDesiredCapacity: true }]);
  });

  it('looks that arrive together share one read of the group, and two AWS reclaims in one read both come off desired', async function () {
    const [kept, gone1, gone2] = h.aws.addGroup(h.spot, { desired: 3, max: 10 }) as [string, string, string];
    const looks = await h.run(async () => {
      await ask.increase('raise-1', { forInstanceId: gone1 });
      await ask.increase('raise-2', { forInstanceId: gone2 });
      assert.equal(h.aws.desired(h.spot), 5);
      h.aws.reclaim(gone1);
      h.aws.reclaim(gone2);
      const describesBefore = h.aws.callsOf('DescribeAutoScalingGroups').length;
      const answers = await Promise.all(
        [kept, gone1, gone2, kept].map((instanceId, n) =>
          ask.retire({ requestId: `look-${n}`, instanceId, terminate: false }),
        ),
      );
      return { answers, describes: h.aws.callsOf('DescribeAutoScalingGroups').length - describesBefore };
    });
    assert.deepEqual(looks.answers.map((a) => a.status), ['still-running', 'reclaimed-by-aws', 'reclaimed-by-aws', 'still-running']);
    assert.equal(h.aws.desired(h.spot), 3, 'both reclaims came off desired, from the same read');
    // The four looks share their reads (one, or two as they arrive), each with the read of the SetDesiredCapacity that
    // settles what it found (it checks desired is still where the look saw it): never a read per look.
    assert.ok(looks.describes <= 4, `${looks.describes} reads of the group for four looks and their changes`);
  });

  it('a termination whose answer was lost is retried, and no later request about it decrements again', async function () {
    const [drained] = h.aws.addGroup(h.spot, { desired: 3, max: 5 }) as [string];
    // AWS terminates the instance but the answer is lost (a 503 after the fact): the activity retries.
    h.aws.fail('TerminateInstanceInAutoScalingGroup', 1, () => awsError('ServiceUnavailable', 'simulated lost answer', 503), true);
    await h.run(async () => {
      await ask.increase('raise');
      const first = await ask.retire({ requestId: 'retire-1', instanceId: drained, terminate: true });
      assert.deepEqual(first, { status: 'terminated', desiredAfter: 3 });
      // A watch of the same instance (as a rebalance workflow does) finds it gone: not an AWS reclaim to settle.
      const again = await ask.retire({ requestId: 'watch-1', instanceId: drained, terminate: false });
      assert.deepEqual(again, { status: 'terminated', desiredAfter: 3 });
    });
    assert.equal(h.aws.desired(h.spot), 3, 'lowered once, by the terminate call');
    assert.equal(h.aws.callsOf('SetDesiredCapacity').length, 1, 'only the raise');
    assert.equal(h.aws.callsOf('TerminateInstanceInAutoScalingGroup').length, 1, 'the retried activity found it gone and sent nothing');
  });

  it('a termination that failed without effect is tried again by the next request', async function () {
    const [drained] = h.aws.addGroup(h.spot, { desired: 3, max: 5 }) as [string];
    h.aws.fail('TerminateInstanceInAutoScalingGroup', 1, () => awsError('ValidationError', 'simulated refusal', 400));
    await h.run(async () => {
      await ask.increase('raise');
      await assert.rejects(ask.retire({ requestId: 'retire-1', instanceId: drained, terminate: true }));
      const again = await ask.retire({ requestId: 'retire-2', instanceId: drained, terminate: true });
      assert.deepEqual(again, { status: 'terminated', desiredAfter: 3 });
    });
    assert.ok(!h.aws.instanceIds(h.spot).includes(drained));
    assert.equal(h.aws.desired(h.spot), 3);
  });

  it('refuses a malformed request in the sending activity, naming the bad value, with nothing sent', async function () {
    h.aws.addGroup(h.spot, { desired: 2, max: 5 });
    await h.run(async () => {
      await assert.rejects(ask.increase(''), /requestId "" must be a non-empty string/);
      await assert.rejects(ask.increase('w', { waiter: ask.waiter({ waitSeconds: -1 }) }), /waiter.waitSeconds -1 must be more than 0/);
      await assert.rejects(ask.retire({ requestId: 'r', instanceId: 'not-an-instance', terminate: true }), /instanceId "not-an-instance" is not an EC2 instance id/);
      await assert.rejects(ask.retire({ requestId: 'r2', instanceId: 'i-nothex', terminate: true }), /instanceId "i-nothex" is not an EC2 instance id/);
    });
    assert.equal(h.aws.calls.length, 0, 'nothing reached AWS');
    assert.equal(h.aws.desired(h.spot), 2);
  });

  it('a malformed signal sent around the activity is ignored by the workflow and wedges nothing', async function () {
    h.aws.addGroup(h.spot, { desired: 2, max: 5 });
    await h.run(async () => {
      const start = { workflowId: capacityWorkflowId(h.spot), taskQueue: h.taskQueue, args: [{ asgName: h.spot }] as [{ asgName: string }] };
      // What `temporal workflow signal` sends without --input, and a request without its waiter.
      await env.client.workflow.signalWithStart<typeof capacityWorkflow, [unknown]>('capacityWorkflow', { ...start, signal: releaseDrainSlotSignal.name, signalArgs: [null] });
      await handle().signal(increaseCapacityRequestSignal.name, { requestId: 'no-waiter' });
      await handle().signal(increaseCapacityRequestSignal.name, null);
      // The workflow still takes a good request afterwards.
      assert.equal((await ask.increase('good')).status, 'granted');
      assert.deepEqual((await handle().query(capacityStatusQuery)).recent.map((r) => r.requestId), ['good']);
    });
    assert.equal(h.aws.desired(h.spot), 3);
  });

  it('a request signalled again while its batch is being applied is applied once (a retried request activity)', async function () {
    h.aws.addGroup(h.spot, { desired: 2, max: 20 });
    const request = {
      asgName: h.spot,
      requestId: 'node-a/spot',
      coalesceSeconds: 0,
      waiter: { workflowId: 'node-a', waitSeconds: 60, pollIntervalSeconds: 10 },
    };
    const slowAws = h.aws.holdSetDesired();
    const status = await h.run(async () => {
      await ask.requests.requestCapacityIncrease(request);
      await slowAws.reached;
      // The same request again while SetDesiredCapacity is on its way: it must not become a batch of its own.
      await ask.requests.requestCapacityIncrease(request);
      slowAws.release();
      for (let i = 0; i < 200; i++) {
        const now = await handle().query(capacityStatusQuery);
        if (now.appliedChanges >= 1 && now.pendingRequests.length === 0) return now;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      throw new Error('the capacity workflow never settled');
    });
    assert.equal(status.appliedChanges, 1);
    assert.equal(h.aws.callsOf('SetDesiredCapacity').length, 1, 'one SetDesiredCapacity');
    assert.equal(h.aws.desired(h.spot), 3, 'raised by one, not two');
  });

  it('answers still being delivered do not hold up the next poll of the group', async function () {
    h.aws.addGroup(h.spot, { desired: 2, max: 20 });
    const delivered: string[][] = [];
    let releaseFirst: () => void = () => undefined;
    const firstHeld = new Promise<void>((resolve) => {
      releaseFirst = resolve;
    });
    h.activityOverrides.sendAnswers = async (input) => {
      const signals = input.answers.map((a) => a.signalName);
      delivered.push(signals);
      if (delivered.length === 1) await firstHeld; // the increase's answer, to a server that takes its time
      return { delivered: input.answers.length, gone: [] };
    };
    await h.run(async () => {
      await ask.requests.requestCapacityIncrease({
        asgName: h.spot,
        requestId: 'node-a/spot',
        waiter: { workflowId: 'node-a', waitSeconds: 60, pollIntervalSeconds: 10 },
      });
      // The poll finds the new instance and its answer goes out while the first delivery is still under way.
      const deadline = Date.now() + 20_000;
      while (delivered.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      releaseFirst();
    });
    assert.deepEqual(delivered, [['capacityAnswer'], ['replacementAnswer']]);
  });

  it('a poll that falls due during a run of retirements goes before the rest of them', async function () {
    const drained = h.aws.addGroup(h.spot, { desired: 6, max: 20, launch: { kind: 'never' } });
    // Each termination takes 3 s, so the waiter's next polls (every 5 s, on the clock's grid) fall due among them.
    h.activityOverrides.terminateInstanceInGroup = async () => {
      await env.sleep('3 seconds');
      return { terminated: 'now' as const };
    };
    await h.run(async () => {
      await ask.requests.requestCapacityIncrease({
        asgName: h.spot,
        requestId: 'node-a/spot',
        waiter: { workflowId: 'node-a', waitSeconds: 600, pollIntervalSeconds: 5 },
      });
      await until('the first poll', async () => (await handle().query(capacityStatusQuery)).waiting.polls >= 1, 20_000);
      await Promise.all(
        drained.map((instanceId, n) => ask.retire({ requestId: `retire-${n}`, instanceId, terminate: true })),
      );
      await recordHistory(handle(), 'capacity-poll-among-retirements');
    });
    const names = await activityNames(handle());
    const terminations = names.flatMap((name, i) => (name === 'terminateInstanceInGroup' ? [i] : []));
    assert.equal(terminations.length, 6);
    const pollsAmongThem = names.slice(terminations[0], terminations.at(-1)).filter((name) => name === 'describeGroupProgress').length;
    assert.ok(pollsAmongThem >= 2, `polls between the first and the last of 18 s of terminations: ${names.join(' ')}`);
  });

  it('sendAnswers sends only answer signals, and counts a workflow that has ended as gone, not as a failure', async function () {
    const answer = { requestId: 'r', status: 'granted' } as const;
    const activity = new MockActivityEnvironment();
    await assert.rejects(
      activity.run(ask.requests.sendAnswers, { answers: [{ workflowId: 'w', signalName: 'drainNow', answer }] }),
      /signal "drainNow" is not an answer signal \(expected one of capacityAnswer, replacementAnswer, retirementAnswer, drainSlotAnswer\)/,
    );
    const sent = await activity.run(ask.requests.sendAnswers, { answers: [{ workflowId: 'no-such-workflow', signalName: 'drainSlotAnswer', answer }] });
    assert.deepEqual(sent, { delivered: 0, gone: ['no-such-workflow'] });
    // A retried attempt sends only what the heartbeat of the previous one does not list as done.
    const retried = new MockActivityEnvironment({ heartbeatDetails: [[0]] });
    const again: { gone: string[] } = await retried.run(ask.requests.sendAnswers, {
      answers: [
        { workflowId: 'answered-before', signalName: 'drainSlotAnswer', answer },
        { workflowId: 'not-yet', signalName: 'drainSlotAnswer', answer },
      ],
    });
    assert.deepEqual(again.gone, ['not-yet'], 'the answer delivered by the earlier attempt is not sent again');
  });

  it('a group that does not exist fails the request for good, naming the group', async function () {
    await h.run(async () => {
      await assert.rejects(
        ask.increase('x'),
        (error: Error) => {
          assert.match(error.message, new RegExp(`Auto Scaling group "${h.spot}" does not exist`));
          return true;
        },
      );
    });
  });
});
