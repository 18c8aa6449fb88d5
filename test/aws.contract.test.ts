// Contract tests: the Auto Scaling activities against a real implementation of the API (moto in server mode, with our
// launcher adding capacity errors, launch delays and scaling activities), over HTTP, with the real SDK client.
import assert from 'node:assert/strict';
import {
  AutoScalingClient,
  CreateAutoScalingGroupCommand,
  CreateLaunchConfigurationCommand,
  DescribeAutoScalingGroupsCommand,
} from '@aws-sdk/client-auto-scaling';
import { ApplicationFailure } from '@temporalio/common';
import { createAutoScalingActivities } from '../activities/auto-scaling.js';
import { createNaiveActivities } from '../bench/naive/activities.js';
import { AwsLauncher } from '../scripts/peers/aws-launcher.js';
import { rememberEnvironment } from './helpers/environment.js';
import { activityEnvironment } from './helpers/temporal.js';

describe('Auto Scaling activities against moto (contract)', function () {
  let launcher: AwsLauncher;
  let client: AutoScalingClient;
  let activities: ReturnType<typeof createAutoScalingActivities>;
  // The benchmark's naive strategy polls with its own activity, over the same reads.
  let naive: ReturnType<typeof createNaiveActivities>;
  const run = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> => activityEnvironment().run(fn, ...args);

  before(async function () {
    launcher = await new AwsLauncher().start();
    client = launcher.client();
    activities = createAutoScalingActivities(client);
    naive = createNaiveActivities(client);
  });
  after(async () => launcher?.stop());
  beforeEach(async function () {
    await launcher.reset();
    await client.send(new CreateLaunchConfigurationCommand({ LaunchConfigurationName: 'nodes', ImageId: 'ami-12c6146b', InstanceType: 'm5.large' }));
    for (const name of ['spot', 'on-demand']) {
      await client.send(
        new CreateAutoScalingGroupCommand({ AutoScalingGroupName: name, LaunchConfigurationName: 'nodes', MinSize: 0, MaxSize: 6, DesiredCapacity: 3, AvailabilityZones: ['us-east-1a'] }),
      );
    }
  });

  async function group(name: string) {
    const output = await client.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [name] }));
    const found = output.AutoScalingGroups?.[0];
    assert.ok(found, `group ${name}`);
    return { desired: found.DesiredCapacity, instances: (found.Instances ?? []).map((i) => i.InstanceId as string) };
  }

  it('describeGroup and verifyInstanceInGroup read real groups', async function () {
    const spot = await run(activities.describeGroup, { asgName: 'spot' });
    assert.equal(spot.desiredCapacity, 3);
    assert.equal(spot.instances.length, 3);
    assert.ok(spot.instances.every((i) => /^i-[0-9a-f]{17}$/.test(i.instanceId) && i.lifecycleState === 'InService'));
    const [first] = spot.instances;
    assert.deepEqual(await run(activities.verifyInstanceInGroup, { instanceId: first?.instanceId, asgName: 'spot' }), { lifecycleState: 'InService' });
    await assert.rejects(run(activities.verifyInstanceInGroup, { instanceId: first?.instanceId, asgName: 'on-demand' }), /belongs to Auto Scaling group "spot", not to the spot group "on-demand"/);
  });

  it('setDesiredCapacity is an absolute target: applying it twice launches one instance', async function () {
    await run(activities.setDesiredCapacity, { asgName: 'spot', desiredCapacity: 4 });
    await run(activities.setDesiredCapacity, { asgName: 'spot', desiredCapacity: 4 });
    const after = await group('spot');
    assert.equal(after.desired, 4);
    assert.equal(after.instances.length, 4);
  });

  it('terminate with decrement lowers desired by one and removes exactly that instance', async function () {
    const before = await group('spot');
    const victim = before.instances[1];
    const result = await run(activities.terminateInstanceInGroup, { asgName: 'spot', instanceId: victim, decrementDesiredCapacity: true });
    assert.deepEqual(result, { terminated: 'now' });
    const after = await group('spot');
    assert.equal(after.desired, 2);
    assert.deepEqual(after.instances.sort(), before.instances.filter((i) => i !== victim).sort());
    const again = await activityEnvironment(2).run(activities.terminateInstanceInGroup, { asgName: 'spot', instanceId: victim, decrementDesiredCapacity: true });
    assert.deepEqual(again, { terminated: 'by-an-earlier-attempt' }, 'a retry changes nothing');
    assert.equal((await group('spot')).desired, 2);
  });

  it('detects a capacity error from the scaling activities, with AWS\'s own text', async function () {
    const before = await run(activities.describeGroup, { asgName: 'spot' });
    await launcher.capacityError('spot');
    const { requestedAt } = await run(activities.setDesiredCapacity, { asgName: 'spot', desiredCapacity: 4 });
    const progress = await run(naive.describeScaleOut, { asgName: 'spot', instancesBefore: before.instances.map((i) => i.instanceId), since: requestedAt });
    assert.deepEqual(progress.newInService, []);
    assert.equal(progress.capacityProblem?.statusCode, 'Failed');
    assert.match(progress.capacityProblem?.message ?? '', /^We currently do not have sufficient m5.large capacity in the Availability Zone you requested \(us-east-1a\)/);
    const health = await run(activities.describeGroupHealth, { asgName: 'spot', since: requestedAt });
    assert.equal(health.inService.length, 3);
    assert.equal(health.desiredCapacity, 4);
    assert.equal(health.failuresSince.length, 1);
  });

  it('sees a delayed launch as pending, then InService', async function () {
    const before = await run(activities.describeGroup, { asgName: 'spot' });
    await launcher.delay('spot', 1.5);
    const { requestedAt } = await run(activities.setDesiredCapacity, { asgName: 'spot', desiredCapacity: 4 });
    const input = { asgName: 'spot', instancesBefore: before.instances.map((i) => i.instanceId), since: requestedAt };
    const early = await run(naive.describeScaleOut, input);
    assert.equal(early.newInService.length, 0);
    assert.equal(early.newPending.length, 1);
    assert.equal(early.capacityProblem, undefined);
    const health = await run(activities.describeGroupHealth, { asgName: 'spot' });
    assert.equal(health.activitiesInProgress.length, 1, 'the launch is a scaling activity in progress');
    assert.deepEqual(new Set(health.members), new Set([...before.instances.map((i) => i.instanceId), ...early.newPending]), 'a launch still Pending is a member');
    await new Promise((resolve) => setTimeout(resolve, 1600));
    const later = await run(naive.describeScaleOut, input);
    assert.deepEqual(later.newInService, early.newPending);
  });

  it('launches still pending count toward desired capacity: raising it again launches only the difference', async function () {
    await launcher.delay('spot', 60);
    await run(activities.setDesiredCapacity, { asgName: 'spot', desiredCapacity: 4 });
    await run(activities.setDesiredCapacity, { asgName: 'spot', desiredCapacity: 6 });
    const described = await run(activities.describeGroup, { asgName: 'spot' });
    assert.equal(described.desiredCapacity, 6);
    assert.deepEqual(
      described.instances.map((i) => i.lifecycleState).sort(),
      ['InService', 'InService', 'InService', 'Pending', 'Pending', 'Pending'],
      'as in AWS: 3 in service and 3 launching, not the first launch made twice',
    );
  });

  it('an unknown group is a non-retryable failure naming it', async function () {
    await assert.rejects(run(activities.describeGroup, { asgName: 'no-such-group' }), (error: unknown) => {
      assert.ok(error instanceof ApplicationFailure && error.nonRetryable);
      assert.match(error.message, /Auto Scaling group "no-such-group" does not exist/);
      return true;
    });
  });

  it('the worker\'s own client finds moto through AWS_ENDPOINT_URL_AUTO_SCALING, and the launcher counts requests', async function () {
    const settings = { AWS_ENDPOINT_URL_AUTO_SCALING: launcher.url, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' };
    const restore = rememberEnvironment(Object.keys(settings));
    Object.assign(process.env, settings);
    try {
      const before = (await launcher.counts()).byAction.DescribeAutoScalingGroups ?? 0;
      const viaEnvironment = createAutoScalingActivities(new AutoScalingClient({}));
      assert.equal((await run(viaEnvironment.describeGroup, { asgName: 'on-demand' })).desiredCapacity, 3);
      assert.equal((await launcher.counts()).byAction.DescribeAutoScalingGroups, before + 1);
    } finally {
      restore();
    }
  });
});
