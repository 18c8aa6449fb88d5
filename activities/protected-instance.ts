// The verify step's question "which protected pair is this instance's?": its group among the protected spot groups'
// members (one shared read for a whole wave), else AWS's answer about the instance itself, so that a refusal names
// the group it really belongs to and says how to protect it.
import { type AutoScalingClient, DescribeAutoScalingInstancesCommand } from '@aws-sdk/client-auto-scaling';
import type { ProtectedPairActivities } from '../workflows/shared/activity-types.js';
import type { GroupPair } from '../workflows/shared/settings.js';
import { awsCall, FailureType, nonRetryable } from './errors.js';
import { describeGroupsPaged, type ProtectedPairs } from './protected-pairs.js';
import { sharedRead } from './shared-read.js';
import { requireInstanceId } from './validation.js';

/** An instance's group and lifecycle state. */
interface Membership {
  asgName: string;
  lifecycleState: string;
}

export function createProtectedPairActivities(client: AutoScalingClient, pairs: ProtectedPairs, options: { membershipCacheMs?: number } = {}): ProtectedPairActivities {
  // Keyed by the spot groups' names: a new set of pairs reads afresh.
  const spotMembers = sharedRead(options.membershipCacheMs ?? 2_000, async (names) => {
    const members = new Map<string, Membership>();
    for (const group of await describeGroupsPaged(client, { names: names.split('\n') })) {
      for (const instance of group.Instances ?? []) {
        members.set(instance.InstanceId ?? '', { asgName: group.AutoScalingGroupName ?? '', lifecycleState: instance.LifecycleState ?? 'Unknown' });
      }
    }
    return members;
  });

  return {
    async verifyProtectedInstance({ instanceId }) {
      requireInstanceId(instanceId);
      const protectedPairs = await pairs.current();
      const pairOf = (asgName: string): GroupPair | undefined => protectedPairs.find((pair) => pair.spotAsgName === asgName);
      const names = protectedPairs.map((pair) => pair.spotAsgName).sort().join('\n');
      const cached = names ? await spotMembers(names).then((members) => members.get(instanceId)).catch(() => undefined) : undefined;
      const membership = cached ?? (await membershipOf(client, instanceId));
      const pair = pairOf(membership.asgName);
      if (pair) return { ...pair, lifecycleState: membership.lifecycleState };
      const onDemandOf = protectedPairs.find((p) => p.onDemandAsgName === membership.asgName);
      const role = onDemandOf ? `, the on-demand fallback of "${onDemandOf.spotAsgName}" (its nodes are removed by that pair's monitor, not rebalanced)` : '';
      throw nonRetryable(
        FailureType.groupNotProtected,
        `instance ${instanceId} is in Auto Scaling group "${membership.asgName}"${role}, which Spot Guard does not protect: ${pairs.howToProtect}`,
      );
    },
  };
}

/** AWS's answer about this one instance; in no group at all can never succeed. */
async function membershipOf(client: AutoScalingClient, instanceId: string): Promise<Membership> {
  const output = await awsCall(`describe Auto Scaling instance ${instanceId}`, () => client.send(new DescribeAutoScalingInstancesCommand({ InstanceIds: [instanceId] })));
  const found = output.AutoScalingInstances?.find((i) => i.InstanceId === instanceId);
  if (!found?.AutoScalingGroupName) throw nonRetryable(FailureType.instanceNotInGroup, `instance ${instanceId} is not in any Auto Scaling group; Spot Guard only acts on instances of the spot groups it protects`);
  return { asgName: found.AutoScalingGroupName, lifecycleState: found.LifecycleState ?? 'Unknown' };
}
