// Auto Scaling activities against aws-sdk-client-mock: the request shapes the real client sends, and how answers
// and errors are read.
import assert from 'node:assert/strict';
import {
  AutoScalingClient,
  DescribeAutoScalingGroupsCommand,
  DescribeAutoScalingInstancesCommand,
  DescribeScalingActivitiesCommand,
  SetDesiredCapacityCommand,
  TerminateInstanceInAutoScalingGroupCommand,
} from '@aws-sdk/client-auto-scaling';
import { ApplicationFailure } from '@temporalio/common';
import { mockClient } from 'aws-sdk-client-mock';
import { activityEnvironment } from './helpers/temporal.js';
import { createAutoScalingActivities, isCapacityProblem } from '../activities/auto-scaling.js';
import { createNaiveActivities } from '../bench/naive/activities.js';
import { awsError } from './fakes/auto-scaling.js';
import { throttleDelayMs } from '../activities/errors.js';

const I1 = 'i-0123456789abcdef0';
const I2 = 'i-0fedcba9876543210';
const GROUP = 'spot-asg';

function group(instances: { id: string; state: string }[], desired = instances.length) {
  return {
    AutoScalingGroups: [
      {
        AutoScalingGroupName: GROUP,
        DesiredCapacity: desired,
        MinSize: 0,
        MaxSize: 10,
        Instances: instances.map((i) => ({ InstanceId: i.id, LifecycleState: i.state, HealthStatus: 'Healthy' })),
      },
    ],
  } as never;
}

async function rejectsNonRetryable(promise: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ApplicationFailure, `expected an ApplicationFailure, got ${String(error)}`);
    assert.equal(error.nonRetryable, true);
    assert.match(error.message, message);
    return true;
  });
}

/** An answer without its timestamp. */
const pick = ({ requestedAt: _at, ...rest }: { requestedAt: string } & Record<string, unknown>): Record<string, unknown> => rest;

describe('Auto Scaling activities', function () {
  const client = new AutoScalingClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } });
  const aws = mockClient(client);
  const activities = createAutoScalingActivities(client);
  // The benchmark's naive strategy polls with its own activity, over the same reads.
  const naive = createNaiveActivities(client);
  const run = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> =>
    activityEnvironment().run(fn, ...args);
  /** The same, as the activity's second attempt. */
  const retry = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> =>
    activityEnvironment(2).run(fn, ...args);

  beforeEach(() => aws.reset());

  it('describeGroupProgress makes exactly one call of each kind (the group alone when asked) and lists InService and launching instances and capacity problems', async function () {
    const since = new Date('2026-11-21T10:00:00Z');
    aws.on(DescribeAutoScalingGroupsCommand).resolves(group([{ id: I1, state: 'InService' }, { id: I2, state: 'Pending' }], 2));
    aws.on(DescribeScalingActivitiesCommand).resolves({
      Activities: [
        { ActivityId: 'old', AutoScalingGroupName: GROUP, StatusCode: 'Failed', StatusMessage: 'InsufficientInstanceCapacity', StartTime: new Date(since.getTime() - 1000), Cause: '' },
        { ActivityId: 'new', AutoScalingGroupName: GROUP, StatusCode: 'Failed', StatusMessage: 'InsufficientInstanceCapacity', StartTime: new Date(since.getTime() + 1000), Cause: '' },
      ],
    } as never);
    const progress = await run(activities.describeGroupProgress, { asgName: GROUP, since: since.toISOString() });
    assert.deepEqual(progress.inService, [I1]);
    assert.deepEqual(progress.launching, [I2]);
    assert.equal(progress.desiredCapacity, 2);
    assert.deepEqual(progress.capacityProblems.map((p) => p.activityId), ['new']);
    assert.equal(aws.commandCalls(DescribeAutoScalingGroupsCommand).length, 1);
    assert.equal(aws.commandCalls(DescribeScalingActivitiesCommand).length, 1);

    const look = await run(activities.describeGroupProgress, { asgName: GROUP, since: since.toISOString(), instancesOnly: true });
    assert.deepEqual([look.inService, look.launching, look.capacityProblems], [[I1], [I2], []]);
    assert.equal(aws.commandCalls(DescribeAutoScalingGroupsCommand).length, 2);
    assert.equal(aws.commandCalls(DescribeScalingActivitiesCommand).length, 1, 'an instances-only look reads no scaling activities');
  });

  it('the polls of several groups at the same instant share one DescribeAutoScalingGroups; a group missing from it fails alone', async function () {
    aws.on(DescribeAutoScalingGroupsCommand).resolves({
      AutoScalingGroups: [['g1', I1], ['g2', I2]].map(([name, id]) => ({ AutoScalingGroupName: name, DesiredCapacity: 1, MinSize: 0, MaxSize: 10, Instances: [{ InstanceId: id, LifecycleState: 'InService', HealthStatus: 'Healthy' }] })),
    } as never);
    const since = new Date().toISOString();
    const looks = await Promise.allSettled(['g1', 'g2', 'gone'].map((asgName) => run(activities.describeGroupProgress, { asgName, since, instancesOnly: true })));
    assert.deepEqual(looks.map((look) => (look.status === 'fulfilled' ? look.value.inService : 'refused')), [[I1], [I2], 'refused']);
    const calls = aws.commandCalls(DescribeAutoScalingGroupsCommand);
    assert.equal(calls.length, 1, 'one read for the three polls');
    assert.deepEqual(calls[0]?.args[0].input.AutoScalingGroupNames, ['g1', 'g2', 'gone']);
  });

  it('a throttled call fails retryably with a jittered delay that grows with the attempt, never as a refusal', async function () {
    aws.on(SetDesiredCapacityCommand).rejects(awsError('Throttling', 'Rate exceeded', 400));
    await assert.rejects(run(activities.setDesiredCapacity, { asgName: GROUP, desiredCapacity: 7 }), (error: unknown) => {
      assert.ok(error instanceof ApplicationFailure);
      assert.equal(error.type, 'AwsThrottled');
      assert.equal(error.nonRetryable, false);
      assert.match(error.message, /AWS throttled the request to set the desired capacity of "spot-asg" to 7: Throttling: Rate exceeded/);
      const delay = Number(error.nextRetryDelay);
      assert.ok(delay >= 1000 && delay <= 2000, `first attempt waits 1-2 s, got ${String(error.nextRetryDelay)}`);
      return true;
    });
    const delays = [1, 3, 6, 12].map((attempt) => throttleDelayMs(attempt, () => 1));
    assert.deepEqual(delays, [2000, 8000, 60000, 60000], 'ceiling doubles from 2 s up to 60 s');
    assert.equal(throttleDelayMs(5, () => 0), 1000, 'full jitter down to 1 s');
  });

  it('verifications arriving together share one read of the group; an instance elsewhere is refused naming its group', async function () {
    const cached = createAutoScalingActivities(client, { membershipCacheMs: 60_000 });
    aws.on(DescribeAutoScalingGroupsCommand).resolves(group([{ id: I1, state: 'InService' }, { id: I2, state: 'InService' }]));
    aws.on(DescribeAutoScalingInstancesCommand).resolves({ AutoScalingInstances: [{ InstanceId: 'i-0aaaaaaaaaaaaaaaa', AutoScalingGroupName: 'other-asg', LifecycleState: 'InService' }] } as never);
    const answers = await Promise.all([I1, I2, I1].map((instanceId) => run(cached.verifyInstanceInGroup, { instanceId, asgName: GROUP })));
    assert.deepEqual(answers.map((a) => a.lifecycleState), ['InService', 'InService', 'InService']);
    assert.equal(aws.commandCalls(DescribeAutoScalingGroupsCommand).length, 1, 'one read for three verifications');
    assert.equal(aws.commandCalls(DescribeAutoScalingInstancesCommand).length, 0);
    await rejectsNonRetryable(
      run(cached.verifyInstanceInGroup, { instanceId: 'i-0aaaaaaaaaaaaaaaa', asgName: GROUP }),
      /belongs to Auto Scaling group "other-asg", not to the spot group "spot-asg"/,
    );
  });

  it('setDesiredCapacity sends the absolute target without honouring cooldowns', async function () {
    aws.on(SetDesiredCapacityCommand).resolves({});
    await run(activities.setDesiredCapacity, { asgName: GROUP, desiredCapacity: 7 });
    assert.deepEqual(aws.commandCalls(SetDesiredCapacityCommand)[0]?.args[0].input, {
      AutoScalingGroupName: GROUP,
      DesiredCapacity: 7,
      HonorCooldown: false,
    });
  });

  it('setDesiredCapacity of an increase: nothing if an earlier attempt set it, on top of the current value (at most MaxSize) if someone else changed it meanwhile', async function () {
    aws.on(SetDesiredCapacityCommand).resolves({});
    const input = { asgName: GROUP, desiredCapacity: 4, from: 3 };
    const setTo = () => aws.commandCalls(SetDesiredCapacityCommand).map((c) => c.args[0].input.DesiredCapacity);
    aws.on(DescribeAutoScalingGroupsCommand).resolves(group([], 4));
    assert.equal((await retry(activities.setDesiredCapacity, input)).desiredCapacity, 4);
    assert.deepEqual(setTo(), [], 'an earlier attempt set it');
    aws.on(DescribeAutoScalingGroupsCommand).resolves(group([], 3));
    await retry(activities.setDesiredCapacity, input);
    assert.deepEqual(setTo(), [4], 'unchanged since the look: the target');
    aws.on(DescribeAutoScalingGroupsCommand).resolves(group([], 2));
    assert.equal((await retry(activities.setDesiredCapacity, input)).desiredCapacity, 3);
    assert.deepEqual(setTo(), [4, 3], 'an operator took one with decrement meanwhile: +1 on top of their 2, not back to 4');
    aws.on(DescribeAutoScalingGroupsCommand).resolves(group([], 10));
    assert.equal((await retry(activities.setDesiredCapacity, input)).desiredCapacity, 10, 'someone raised it to MaxSize meanwhile: never past it');
    await rejectsNonRetryable(run(activities.setDesiredCapacity, { asgName: GROUP, desiredCapacity: 2, from: -3 }), /from -3 for "spot-asg" is not a whole number/);
  });

  it('setDesiredCapacity, first attempt: the target while desired is still where the look saw it, else nothing and `changedMeanwhile` (the look is stale)', async function () {
    aws.on(SetDesiredCapacityCommand).resolves({});
    const input = { asgName: GROUP, desiredCapacity: 4, from: 3 };
    const setTo = () => aws.commandCalls(SetDesiredCapacityCommand).map((c) => c.args[0].input.DesiredCapacity);
    aws.on(DescribeAutoScalingGroupsCommand).resolves(group([], 3));
    assert.deepEqual(pick(await run(activities.setDesiredCapacity, input)), { desiredCapacity: 4 });
    assert.deepEqual(setTo(), [4]);
    // An operator's terminate with decrement between the workflow's look and this call (a worker restart between the two).
    aws.on(DescribeAutoScalingGroupsCommand).resolves(group([], 2));
    assert.deepEqual(pick(await run(activities.setDesiredCapacity, input)), { desiredCapacity: 2, changedMeanwhile: true });
    assert.deepEqual(setTo(), [4], 'nothing set over their change: the workflow looks again');
    assert.equal(aws.commandCalls(DescribeAutoScalingGroupsCommand).length, 2, 'one read per attempt');
  });

  it('setDesiredCapacity retrying a decrease: not made once someone else changed desired meanwhile (it could take a running node)', async function () {
    aws.on(SetDesiredCapacityCommand).resolves({});
    const input = { asgName: GROUP, desiredCapacity: 3, from: 4 };
    aws.on(DescribeAutoScalingGroupsCommand).resolves(group([], 2));
    assert.equal((await retry(activities.setDesiredCapacity, input)).desiredCapacity, 2);
    aws.on(DescribeAutoScalingGroupsCommand).resolves(group([], 4));
    await retry(activities.setDesiredCapacity, input);
    assert.deepEqual(aws.commandCalls(SetDesiredCapacityCommand).map((c) => c.args[0].input.DesiredCapacity), [3], 'only while it is still at its starting value');
  });

  it('describeDepartures tells by each termination\'s cause whether desired came down with it, paging until all are found', async function () {
    const terminating = (id: string, cause: string) => ({ ActivityId: id, AutoScalingGroupName: GROUP, StatusCode: 'Successful' as const, Description: `Terminating EC2 instance: ${id}`, Cause: `At 2026-12-02T10:00:00Z, instance ${id} ${cause}.`, StartTime: new Date('2026-12-02T10:00:00Z') });
    aws
      .on(DescribeScalingActivitiesCommand)
      .resolvesOnce({ Activities: [terminating(I1, 'was taken out of service in response to a user request, shrinking the capacity from 4 to 3')], NextToken: 'page-2' })
      .resolvesOnce({ Activities: [terminating(I2, 'was taken out of service in response to an EC2 health check indicating it has been terminated or stopped')] });
    const causes = await run(activities.describeDepartures, { asgName: GROUP, instanceIds: [I1, I2], since: '2026-12-01T00:00:00Z' });
    assert.deepEqual(causes, { [I1]: 'with-decrement', [I2]: 'without-decrement' });
    assert.deepEqual(aws.commandCalls(DescribeScalingActivitiesCommand).map((c) => c.args[0].input.NextToken), [undefined, 'page-2']);
  });

  it('terminateInstanceInGroup terminates exactly that instance with ShouldDecrementDesiredCapacity', async function () {
    aws.on(DescribeAutoScalingGroupsCommand).resolves(group([{ id: I1, state: 'InService' }]));
    aws.on(TerminateInstanceInAutoScalingGroupCommand).resolves({});
    const result = await run(activities.terminateInstanceInGroup, { asgName: GROUP, instanceId: I1, decrementDesiredCapacity: true });
    assert.deepEqual(result, { terminated: 'now' });
    assert.deepEqual(aws.commandCalls(TerminateInstanceInAutoScalingGroupCommand)[0]?.args[0].input, {
      InstanceId: I1,
      ShouldDecrementDesiredCapacity: true,
    });
  });

  it('terminateInstanceInGroup does nothing for an instance already terminating: its own earlier attempt on a retry, someone else\'s on the first', async function () {
    aws.on(DescribeAutoScalingGroupsCommand).resolves(group([{ id: I1, state: 'Terminating:Wait' }]));
    const input = { asgName: GROUP, instanceId: I1, decrementDesiredCapacity: true };
    assert.deepEqual(await activityEnvironment(2).run(activities.terminateInstanceInGroup, input), { terminated: 'by-an-earlier-attempt' });
    assert.deepEqual(await activityEnvironment(1).run(activities.terminateInstanceInGroup, input), { terminated: 'already-leaving' });
    assert.equal(aws.commandCalls(TerminateInstanceInAutoScalingGroupCommand).length, 0);
  });

  it('the benchmark\'s describeScaleOut reports a new InService instance, ignoring those there before', async function () {
    aws.on(DescribeAutoScalingGroupsCommand).resolves(group([{ id: I1, state: 'InService' }, { id: I2, state: 'InService' }]));
    const progress = await run(naive.describeScaleOut, { asgName: GROUP, instancesBefore: [I1], since: new Date().toISOString() });
    assert.deepEqual(progress, { newInService: [I2], newPending: [] });
    assert.equal(aws.commandCalls(DescribeScalingActivitiesCommand).length, 0, 'no need to look at activities');
  });

  it('the benchmark\'s describeScaleOut finds a Failed scaling activity started after the request', async function () {
    const since = new Date('2026-11-21T10:00:00Z');
    aws.on(DescribeAutoScalingGroupsCommand).resolves(group([{ id: I1, state: 'InService' }], 2));
    aws.on(DescribeScalingActivitiesCommand).resolves({
      Activities: [
        { ActivityId: 'new', AutoScalingGroupName: GROUP, Cause: '', StartTime: new Date('2026-11-21T10:00:05Z'), StatusCode: 'Failed', StatusMessage: 'Could not launch Spot Instances. UnfulfillableCapacity - Unable to fulfill capacity due to your request configuration. Please adjust your request and try again. Launching EC2 instance failed.' },
        { ActivityId: 'old', AutoScalingGroupName: GROUP, Cause: '', StartTime: new Date('2026-11-21T09:00:00Z'), StatusCode: 'Failed', StatusMessage: 'older failure' },
      ],
    });
    const progress = await run(naive.describeScaleOut, { asgName: GROUP, instancesBefore: [I1], since: since.toISOString() });
    assert.equal(progress.capacityProblem?.activityId, 'new');
    assert.equal(progress.capacityProblem?.statusCode, 'Failed');
    assert.match(progress.capacityProblem?.message ?? '', /UnfulfillableCapacity/);
    assert.deepEqual(aws.commandCalls(DescribeScalingActivitiesCommand)[0]?.args[0].input, { AutoScalingGroupName: GROUP, MaxRecords: 20 });
  });

  it('the benchmark\'s describeScaleOut ignores failures older than the request', async function () {
    aws.on(DescribeAutoScalingGroupsCommand).resolves(group([{ id: I1, state: 'InService' }], 2));
    aws.on(DescribeScalingActivitiesCommand).resolves({
      Activities: [{ ActivityId: 'old', AutoScalingGroupName: GROUP, Cause: '', StartTime: new Date('2026-11-21T09:00:00Z'), StatusCode: 'Failed' }],
    });
    const progress = await run(naive.describeScaleOut, { asgName: GROUP, instancesBefore: [I1], since: '2026-11-21T10:00:00Z' });
    assert.equal(progress.capacityProblem, undefined);
  });

  it('recognises the capacity errors AWS reports, Failed or still retrying', function () {
    assert.ok(isCapacityProblem({ StatusCode: 'Failed', StatusMessage: 'anything' }));
    for (const text of [
      'InsufficientInstanceCapacity',
      'MaxSpotInstanceCountExceeded - Max spot instance count exceeded',
      'VcpuLimitExceeded - You have requested more vCPU capacity than your current vCPU limit',
      'We currently do not have sufficient c5.xlarge capacity in the Availability Zone you requested (eu-west-1b).',
    ]) {
      assert.ok(isCapacityProblem({ StatusCode: 'InProgress', StatusMessage: text }), text);
    }
    assert.equal(isCapacityProblem({ StatusCode: 'Successful', StatusMessage: 'Launching a new EC2 instance: i-1' }), false);
  });

  it('verifyInstanceInGroup refuses an instance of another group, naming both', async function () {
    aws.on(DescribeAutoScalingInstancesCommand).resolves({ AutoScalingInstances: [{ InstanceId: I1, AutoScalingGroupName: 'od-asg', AvailabilityZone: 'a', LifecycleState: 'InService', HealthStatus: 'Healthy', ProtectedFromScaleIn: false }] });
    await rejectsNonRetryable(run(activities.verifyInstanceInGroup, { instanceId: I1, asgName: GROUP }), /belongs to Auto Scaling group "od-asg", not to the spot group "spot-asg"/);
  });

  it('an unknown group is a non-retryable failure naming it', async function () {
    aws.on(DescribeAutoScalingGroupsCommand).resolves({ AutoScalingGroups: [] });
    await rejectsNonRetryable(run(activities.describeGroup, { asgName: 'nope' }), /Auto Scaling group "nope" does not exist/);
  });

  it('malformed input fails at once and sends nothing', async function () {
    await rejectsNonRetryable(run(activities.setDesiredCapacity, { asgName: GROUP, desiredCapacity: -1 }), /desired capacity -1/);
    await rejectsNonRetryable(run(activities.terminateInstanceInGroup, { asgName: GROUP, instanceId: 'i-xyz', decrementDesiredCapacity: true }), /"i-xyz" is not an EC2 instance id/);
    await rejectsNonRetryable(run(activities.describeGroup, { asgName: 'two words' }), /"two words" is not a valid Auto Scaling group name/);
    assert.equal(aws.calls().length, 0);
  });

  it('a request AWS refuses for good becomes non-retryable; throttling and 5xx stay retryable', async function () {
    aws.on(SetDesiredCapacityCommand).rejectsOnce(awsError('ValidationError', 'New SetDesiredCapacity value 11 is above max value 10', 400));
    await rejectsNonRetryable(run(activities.setDesiredCapacity, { asgName: GROUP, desiredCapacity: 11 }), /AWS refused to set the desired capacity of "spot-asg" to 11: ValidationError: New SetDesiredCapacity value 11 is above max value 10/);

    for (const transient of [awsError('Throttling', 'Rate exceeded', 400), awsError('ServiceUnavailable', 'unavailable', 503), Object.assign(new Error('socket hang up'), { name: 'TimeoutError' })]) {
      aws.reset();
      aws.on(SetDesiredCapacityCommand).rejects(transient);
      await assert.rejects(run(activities.setDesiredCapacity, { asgName: GROUP, desiredCapacity: 3 }), (error: unknown) => {
        assert.ok(!(error instanceof ApplicationFailure && error.nonRetryable), `${transient.name} must stay retryable`);
        return true;
      });
    }
  });

  it('dry run changes nothing, and says so in its answer', async function () {
    const dry = createAutoScalingActivities(client, { dryRun: true });
    aws.on(DescribeAutoScalingGroupsCommand).resolves(group([{ id: I1, state: 'InService' }]));
    assert.equal((await run(dry.setDesiredCapacity, { asgName: GROUP, desiredCapacity: 4 })).dryRun, true);
    assert.deepEqual(await run(dry.terminateInstanceInGroup, { asgName: GROUP, instanceId: I1, decrementDesiredCapacity: true }), { terminated: 'now', dryRun: true });
    assert.equal(aws.commandCalls(SetDesiredCapacityCommand).length, 0);
    assert.equal(aws.commandCalls(TerminateInstanceInAutoScalingGroupCommand).length, 0);
  });
});
