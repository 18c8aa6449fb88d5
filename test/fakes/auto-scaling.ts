// A stateful in-memory model of Auto Scaling groups behind aws-sdk-client-mock: the real AutoScalingClient and the real
// activities run, only `send` is answered here. Launch behaviour is set per group (instant, after N looks, never, or
// failing with a real capacity-error scaling activity) and faults can be injected per command.
import {
  type Activity,
  AutoScalingClient,
  DescribeAutoScalingGroupsCommand,
  type DescribeAutoScalingGroupsCommandInput,
  DescribeAutoScalingInstancesCommand,
  type DescribeAutoScalingInstancesCommandInput,
  DescribeScalingActivitiesCommand,
  type DescribeScalingActivitiesCommandInput,
  SetDesiredCapacityCommand,
  type SetDesiredCapacityCommandInput,
  TerminateInstanceInAutoScalingGroupCommand,
  type TerminateInstanceInAutoScalingGroupCommandInput,
} from '@aws-sdk/client-auto-scaling';
import { mockClient } from 'aws-sdk-client-mock';

export type LaunchBehaviour =
  | { kind: 'in-service-after-looks'; looks: number }
  | { kind: 'never' }
  | { kind: 'capacity-error'; message: string }
  /** Launches, stays Pending for `looks` describes, then fails (a Failed scaling activity) and so do later launches. */
  | { kind: 'lost-while-launching'; looks: number; message: string };

export const INSUFFICIENT_CAPACITY =
  'We currently do not have sufficient m5.large capacity in the Availability Zone you requested (us-east-1a). Our system will be working on provisioning additional capacity. Launching EC2 instance failed.';

interface FakeInstance {
  instanceId: string;
  lifecycleState: string;
  looksUntilInService: number;
}

interface FakeGroup {
  name: string;
  desired: number;
  min: number;
  max: number;
  instances: FakeInstance[];
  activities: Activity[];
  launch: LaunchBehaviour;
}

type CommandName = 'DescribeAutoScalingGroups' | 'SetDesiredCapacity' | 'TerminateInstanceInAutoScalingGroup' | 'DescribeAutoScalingInstances' | 'DescribeScalingActivities';

interface Fault {
  remaining: number;
  /** Apply the request, then fail: the response was lost, as when a connection drops after AWS acted. */
  afterApplying: boolean;
  error: () => Error;
}

let instanceCounter = 0x1000;
export function newInstanceId(): string {
  return `i-${(instanceCounter++).toString(16).padStart(17, '0')}`;
}

export function awsError(name: string, message: string, httpStatusCode: number): Error {
  return Object.assign(new Error(message), { name, $fault: httpStatusCode >= 500 ? 'server' : 'client', $metadata: { httpStatusCode } });
}

export class FakeAutoScaling {
  readonly client = new AutoScalingClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } });
  readonly groups = new Map<string, FakeGroup>();
  readonly calls: { command: CommandName; input: Record<string, unknown> }[] = [];
  private readonly faults = new Map<CommandName, Fault>();
  /** Called once for each launched instance when it becomes InService. */
  onInService: (instanceId: string) => void = () => undefined;
  /**
   * Called as an instance is terminated, before it leaves its group: by a TerminateInstanceInAutoScalingGroup call
   * ('terminate-call'), or picked by the group itself because desired went below its instance count ('scale-in').
   */
  onTerminate: (instanceId: string, asgName: string, how: 'terminate-call' | 'scale-in') => void = () => undefined;

  constructor() {
    const mock = mockClient(this.client);
    mock.on(DescribeAutoScalingGroupsCommand).callsFake((input: DescribeAutoScalingGroupsCommandInput) => this.run('DescribeAutoScalingGroups', input, () => this.describeGroups(input.AutoScalingGroupNames ?? [])));
    mock.on(SetDesiredCapacityCommand).callsFake((input: SetDesiredCapacityCommandInput) => {
      const apply = () => this.run('SetDesiredCapacity', input, () => this.setDesired(input.AutoScalingGroupName, input.DesiredCapacity));
      const held = this.held;
      if (!held) return apply();
      held.reached();
      return held.gate.then(apply);
    });
    mock.on(TerminateInstanceInAutoScalingGroupCommand).callsFake((input: TerminateInstanceInAutoScalingGroupCommandInput) =>
      this.run('TerminateInstanceInAutoScalingGroup', input, () => this.terminate(input.InstanceId, input.ShouldDecrementDesiredCapacity)),
    );
    mock.on(DescribeAutoScalingInstancesCommand).callsFake((input: DescribeAutoScalingInstancesCommandInput) => this.run('DescribeAutoScalingInstances', input, () => this.describeInstances(input.InstanceIds ?? [])));
    mock.on(DescribeScalingActivitiesCommand).callsFake((input: DescribeScalingActivitiesCommandInput) =>
      this.run('DescribeScalingActivities', input, () => ({ Activities: [...(this.group(input.AutoScalingGroupName).activities)].reverse() })),
    );
  }

  private held?: { gate: Promise<void>; reached: () => void };

  /**
   * Holds the next SetDesiredCapacity calls (an AWS answer that takes its time) until `release` is called; `reached`
   * resolves when the first of them arrives.
   */
  holdSetDesired(): { reached: Promise<void>; release: () => void } {
    let release = (): void => undefined;
    let reached = (): void => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const reachedPromise = new Promise<void>((resolve) => (reached = resolve));
    this.held = { gate, reached };
    return {
      reached: reachedPromise,
      release: () => {
        this.held = undefined;
        release();
      },
    };
  }

  addGroup(name: string, options: { desired: number; max: number; min?: number; launch?: LaunchBehaviour }): string[] {
    const group: FakeGroup = {
      name,
      desired: options.desired,
      min: options.min ?? 0,
      max: options.max,
      instances: [],
      activities: [],
      launch: options.launch ?? { kind: 'in-service-after-looks', looks: 1 },
    };
    for (let i = 0; i < options.desired; i++) group.instances.push({ instanceId: newInstanceId(), lifecycleState: 'InService', looksUntilInService: 0 });
    this.groups.set(name, group);
    return group.instances.map((i) => i.instanceId);
  }

  /** Adds `count` InService instances to a group (desired grows with them); returns their ids. */
  addInstances(name: string, count: number): string[] {
    const group = this.group(name);
    const added = Array.from({ length: count }, () => ({ instanceId: newInstanceId(), lifecycleState: 'InService', looksUntilInService: 0 }));
    group.instances.push(...added);
    group.desired += count;
    return added.map((i) => i.instanceId);
  }

  setLaunch(name: string, launch: LaunchBehaviour): void {
    this.group(name).launch = launch;
  }

  /** What AWS does after failed launches once capacity is back: launch again up to desired capacity. */
  relaunch(name: string): void {
    this.reconcile(this.group(name));
  }

  /** The next `times` calls of `command` fail with `error`; with afterApplying the change is made first. */
  fail(command: CommandName, times: number, error: () => Error, afterApplying = false): void {
    this.faults.set(command, { remaining: times, afterApplying, error });
  }

  desired(name: string): number {
    return this.group(name).desired;
  }

  /** The group's instances and their lifecycle states, in launch order. */
  instances(name: string): { instanceId: string; lifecycleState: string }[] {
    return this.group(name).instances.map((i) => ({ instanceId: i.instanceId, lifecycleState: i.lifecycleState }));
  }

  /** Launches stuck Pending (kind 'never', or a long 'in-service-after-looks') become InService after `looks` more describes. */
  finishLaunches(name: string, looks: number): void {
    for (const instance of this.group(name).instances) {
      if (instance.lifecycleState === 'Pending' && instance.looksUntilInService > looks) instance.looksUntilInService = looks;
    }
  }

  instanceIds(name: string): string[] {
    return this.group(name).instances.map((i) => i.instanceId);
  }

  callsOf(command: CommandName): Record<string, unknown>[] {
    return this.calls.filter((c) => c.command === command).map((c) => c.input);
  }

  private run<T>(command: CommandName, input: object, apply: () => T): T {
    this.calls.push({ command, input: { ...input } });
    const fault = this.faults.get(command);
    if (fault && fault.remaining > 0) {
      fault.remaining--;
      if (fault.afterApplying) apply();
      throw fault.error();
    }
    return apply();
  }

  private group(name: string | undefined): FakeGroup {
    const group = this.groups.get(name ?? '');
    if (!group) throw awsError('ValidationError', `AutoScalingGroup name not found - AutoScalingGroup '${name}' not found`, 400);
    return group;
  }

  private describeGroups(names: string[]) {
    const groups = names.map((n) => this.groups.get(n)).filter((g): g is FakeGroup => g !== undefined);
    for (const group of groups) {
      for (const instance of [...group.instances]) {
        if (instance.lifecycleState === 'Pending' && instance.looksUntilInService > 0 && --instance.looksUntilInService === 0) {
          if (group.launch.kind === 'lost-while-launching') {
            this.loseLaunch(group, instance, group.launch.message);
            continue;
          }
          instance.lifecycleState = 'InService';
          this.onInService(instance.instanceId);
        }
      }
    }
    return {
      AutoScalingGroups: groups.map((g) => ({
        AutoScalingGroupName: g.name,
        DesiredCapacity: g.desired,
        MinSize: g.min,
        MaxSize: g.max,
        CapacityRebalance: false,
        Instances: g.instances.map((i) => ({ InstanceId: i.instanceId, LifecycleState: i.lifecycleState, HealthStatus: 'Healthy' })),
      })),
    };
  }

  private describeInstances(ids: string[]) {
    const found = [];
    for (const group of this.groups.values()) {
      for (const instance of group.instances) {
        if (ids.includes(instance.instanceId)) found.push({ InstanceId: instance.instanceId, AutoScalingGroupName: group.name, LifecycleState: instance.lifecycleState });
      }
    }
    return { AutoScalingInstances: found };
  }

  private setDesired(name: string | undefined, desired: number | undefined) {
    const group = this.group(name);
    if (desired === undefined || desired > group.max || desired < group.min) {
      throw awsError('ValidationError', `New SetDesiredCapacity value ${desired} is outside the bounds [${group.min}, ${group.max}] for the AutoScalingGroup.`, 400);
    }
    group.desired = desired;
    this.reconcile(group);
    return {};
  }

  private terminate(instanceId: string | undefined, decrement: boolean | undefined) {
    for (const group of this.groups.values()) {
      const index = group.instances.findIndex((i) => i.instanceId === instanceId);
      if (index === -1) continue;
      this.onTerminate(group.instances[index].instanceId, group.name, 'terminate-call');
      group.instances.splice(index, 1);
      const before = group.desired;
      if (decrement) group.desired--;
      this.terminationActivity(group, instanceId ?? '', `was taken out of service in response to a user request${decrement ? `, shrinking the capacity from ${before} to ${group.desired}` : ''}`);
      this.reconcile(group);
      return { Activity: { ActivityId: `term-${instanceId}`, AutoScalingGroupName: group.name, StatusCode: 'InProgress' } };
    }
    throw awsError('ValidationError', `Instance Id not found - No managed instance found for instance ID: ${instanceId}`, 400);
  }

  /**
   * AWS took the instance back (spot interruption): it leaves the group, which would launch a replacement. By default
   * the launch waits for the group's next change of desired capacity; `relaunch` makes it at once.
   */
  reclaim(instanceId: string, options: { relaunch?: boolean } = {}): void {
    for (const group of this.groups.values()) {
      const index = group.instances.findIndex((i) => i.instanceId === instanceId);
      if (index === -1) continue;
      group.instances.splice(index, 1);
      this.terminationActivity(group, instanceId, 'was taken out of service in response to an EC2 health check indicating it has been terminated or stopped');
      if (options.relaunch) this.reconcile(group);
    }
  }

  /** A termination's scaling activity, its cause worded as AWS (and moto) word it. */
  private terminationActivity(group: FakeGroup, instanceId: string, cause: string): void {
    const now = new Date();
    group.activities.push({
      ActivityId: `act-${group.activities.length}`,
      AutoScalingGroupName: group.name,
      Cause: `At ${now.toISOString()}, instance ${instanceId} ${cause}.`,
      Description: `Terminating EC2 instance: ${instanceId}`,
      StartTime: now,
      EndTime: now,
      // The fake removes the instance at once: its termination is over as it begins.
      StatusCode: 'Successful',
      Progress: 100,
    });
  }

  private failedLaunch(group: FakeGroup, message: string, instanceId?: string): void {
    group.activities.push({
      ActivityId: `act-${group.activities.length}`,
      AutoScalingGroupName: group.name,
      Cause: 'An instance was started in response to a difference between desired and actual capacity',
      Description: `Launching a new EC2 instance${instanceId ? `: ${instanceId}` : ''}.  Status Reason: ${message}`,
      StartTime: new Date(),
      StatusCode: 'Failed',
      StatusMessage: message,
      Progress: 100,
    });
  }

  /** A launch that fails after it began: the instance leaves the group, and the group cannot launch another. */
  private loseLaunch(group: FakeGroup, instance: FakeInstance, message: string): void {
    group.instances.splice(group.instances.indexOf(instance), 1);
    this.failedLaunch(group, message, instance.instanceId);
    group.launch = { kind: 'capacity-error', message };
    this.reconcile(group);
  }

  private reconcile(group: FakeGroup): void {
    const launches = group.desired - group.instances.length;
    for (let i = 0; i < launches; i++) {
      const launch = group.launch;
      if (launch.kind === 'capacity-error') {
        this.failedLaunch(group, launch.message);
        continue;
      }
      group.instances.push({
        instanceId: newInstanceId(),
        lifecycleState: 'Pending',
        looksUntilInService: launch.kind === 'never' ? Number.POSITIVE_INFINITY : launch.looks,
      });
    }
    while (group.instances.length > group.desired) {
      const victim = group.instances[group.instances.length - 1];
      this.onTerminate(victim.instanceId, group.name, 'scale-in');
      group.instances.pop();
      this.terminationActivity(group, victim.instanceId, `was taken out of service in response to a difference between desired and actual capacity, shrinking the capacity from ${group.instances.length + 1} to ${group.desired}`);
    }
  }
}
