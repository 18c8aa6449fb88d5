// The benchmark's naive strategy polls the group itself, one workflow at a time: describeScaleOut is its only activity
// of its own (the rest are Spot Guard's). Spot Guard's capacity workflow polls once for every waiter instead
// (describeGroupProgress); this one is registered only on the benchmark's worker (bench/naive/worker.ts).
import type { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { type CapacityProblem, capacityProblemsSince, describeAutoScalingGroup } from '../../activities/auto-scaling.js';
import { isTerminatingState } from '../../workflows/shared/ids.js';

export interface ScaleOutProgress {
  /** New instances (absent before the request) that are InService, oldest first. */
  newInService: string[];
  /** New instances still on their way (Pending, Pending:Wait, ...). */
  newPending: string[];
  capacityProblem?: CapacityProblem;
}

export function createNaiveActivities(client: AutoScalingClient) {
  return {
    /**
     * One poll of a scale-out in progress: which new instances are InService, and whether a scaling activity that
     * started after the request reports a capacity problem (read only while no new instance is InService).
     */
    async describeScaleOut(input: { asgName: string; instancesBefore: string[]; since: string }): Promise<ScaleOutProgress> {
      const group = await describeAutoScalingGroup(client, input.asgName);
      const before = new Set(input.instancesBefore);
      const fresh = (group.Instances ?? []).filter((i) => i.InstanceId && !before.has(i.InstanceId));
      const newInService = fresh.filter((i) => i.LifecycleState === 'InService').map((i) => i.InstanceId as string);
      const newPending = fresh
        .filter((i) => i.LifecycleState !== 'InService' && !isTerminatingState(i.LifecycleState))
        .map((i) => i.InstanceId as string);
      const progress: ScaleOutProgress = { newInService, newPending };
      if (newInService.length > 0) return progress;

      const [problem] = await capacityProblemsSince(client, input.asgName, input.since);
      if (problem) progress.capacityProblem = problem;
      return progress;
    },
  };
}

export type NaiveActivities = ReturnType<typeof createNaiveActivities>;
