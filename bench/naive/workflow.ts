// The benchmark's comparison strategy: the original flow of the seeds, as its documents describe it, for the same warned
// node. Each workflow reads the spot group's desired capacity and writes desired + 1 (a read-modify-write that loses
// increments when many run at once: that is what the benchmark measures), polls the group itself every interval until
// a new instance is InService, falls back to on-demand the same way, then taints, cordons and evicts. No capacity
// workflow, no disruption budget, no retirement, no interruption signal. Runs only on the benchmark's worker
// (bench/naive/worker.ts), under the rebalance workflow's id, search attributes, phases and status query, so the
// benchmark reads both strategies alike.
import { ApplicationFailure, proxyActivities, proxyLocalActivities, setHandler, sleep, upsertSearchAttributes } from '@temporalio/workflow';
import type { SpotGuardActivities } from '../../workflows/shared/activity-types.js';
import { type CapacityPhase, problemsOfRebalanceInput, type RebalanceInput, type RebalancePhase, type RebalanceResult, type RebalanceStatus, rebalanceStatusQuery, type ScaleAttempt } from '../../workflows/rebalance/api.js';
import { searchAttributes } from '../../workflows/shared/search-attributes.js';
import type { GroupPair, RunSettings } from '../../workflows/shared/settings.js';
import { rootMessage } from '../../workflows/shared/failures.js';
import type { NaiveActivities } from './activities.js';

type Activities = SpotGuardActivities & NaiveActivities;

const retry = { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' };
// The short steps as Spot Guard's rebalance workflow runs them (local activities, inside the workflow task that reaches
// them), so the two strategies differ in how they get capacity, not in how they verify and taint.
const steps = proxyLocalActivities<Activities>({ startToCloseTimeout: '30 seconds', retry });
// One poll is worth little once the next is due: a failed poll counts as "no news" and the wait goes on.
const { describeScaleOut } = proxyActivities<Activities>({ startToCloseTimeout: '20 seconds', scheduleToCloseTimeout: '1 minute', retry });
const { describeGroup, setDesiredCapacity } = proxyActivities<Activities>({ startToCloseTimeout: '30 seconds', scheduleToCloseTimeout: '10 minutes', retry });

const isoNow = (): string => new Date().toISOString();

/** How long to wait for a group's new instance, and how often to look. */
interface PollWait {
  timeoutSeconds: number;
  pollSeconds: number;
}

export async function naiveRebalanceWorkflow(input: RebalanceInput): Promise<RebalanceResult> {
  const problems = problemsOfRebalanceInput(input);
  if (problems.length > 0) throw ApplicationFailure.nonRetryable(problems.join('; '), 'InvalidInput');
  const rebalance = new NaiveRebalance(input);
  setHandler(rebalanceStatusQuery, () => rebalance.status);
  return rebalance.run();
}

/** One naive rebalance: its status (what the query answers) and its steps. */
class NaiveRebalance {
  readonly status: RebalanceStatus;

  constructor(private readonly input: RebalanceInput) {
    this.status = {
      instanceId: input.instanceId,
      nodeName: input.nodeName,
      phase: 'verifying',
      capacityPhase: 'not-started',
      startedAt: isoNow(),
      phaseChangedAt: isoNow(),
      spot: { asgName: '' },
      notes: [],
    };
  }

  async run(): Promise<RebalanceResult> {
    const { instanceId, nodeName } = this.input;
    upsertSearchAttributes([
      { key: searchAttributes.instanceId, value: instanceId },
      { key: searchAttributes.node, value: nodeName },
      { key: searchAttributes.phase, value: this.status.phase },
    ]);
    const settings: RunSettings = { ...(await steps.loadSettings()), ...(await this.verify()) };
    this.status.spot.asgName = settings.spotAsgName;
    upsertSearchAttributes([{ key: searchAttributes.asg, value: settings.spotAsgName }]);

    this.enterPhase('adding-capacity');
    await this.addReplacementCapacity(settings);
    this.enterPhase('tainting');
    const tainted = await steps.taintNode({ nodeName, taint: settings.taint });
    if (tainted.nodeGone) this.note(`node ${nodeName} is gone from Kubernetes (deleted or reclaimed)`);
    else this.status.taintedAt = isoNow();
    const drained = await this.drain(settings);
    // No retirement: the drained instance is left for AWS to take, and the group keeps its +1.
    this.status.instanceFate = 'kept';
    this.enterPhase('done');
    return {
      instanceId,
      nodeName,
      replacement: this.status.replacement ?? 'capacity-unavailable',
      replacementInstanceId: this.status.replacementInstanceId,
      tainted: this.status.taintedAt !== undefined,
      drained,
      instanceFate: 'kept',
      notes: this.status.notes,
    };
  }

  /** The node names this instance, and the instance is in a protected spot group, whose pair it answers; nothing changes before this passes. */
  private async verify(): Promise<GroupPair> {
    const { instanceId, nodeName } = this.input;
    try {
      await steps.verifyNode({ nodeName, instanceId });
      const { spotAsgName, onDemandAsgName } = await steps.verifyProtectedInstance({ instanceId });
      return { spotAsgName, onDemandAsgName };
    } catch (error) {
      this.enterPhase('failed');
      upsertSearchAttributes([{ key: searchAttributes.outcome, value: 'rejected' }]);
      throw ApplicationFailure.nonRetryable(`rejected, nothing changed: ${rootMessage(error)}`, 'RebalanceRejected');
    }
  }

  /** Spot +1 and its wait; on a capacity problem or timeout, on-demand +1 and its wait. */
  private async addReplacementCapacity(settings: RunSettings): Promise<void> {
    if (!settings.addReplacementCapacity) {
      this.status.replacement = 'not-requested';
    } else if (await this.scaleOut(this.status.spot, 'spot', { timeoutSeconds: settings.capacityCheckTimeoutSeconds, pollSeconds: settings.asgPollIntervalSeconds })) {
      this.settle('spot', this.status.spot);
    } else {
      this.note(`spot capacity unavailable (${this.status.spot.failure}); falling back to on-demand group ${settings.onDemandAsgName}`);
      this.status.onDemand = { asgName: settings.onDemandAsgName };
      const wait = { timeoutSeconds: settings.scaleTimeoutSeconds, pollSeconds: settings.asgPollIntervalSeconds };
      if (await this.scaleOut(this.status.onDemand, 'on-demand', wait)) this.settle('on-demand', this.status.onDemand);
      else this.status.replacement = 'capacity-unavailable';
    }
    upsertSearchAttributes([{ key: searchAttributes.outcome, value: this.status.replacement ?? 'capacity-unavailable' }]);
    this.enterCapacityPhase('done');
  }

  private settle(kind: 'spot' | 'on-demand', attempt: ScaleAttempt): void {
    this.status.replacement = kind;
    this.status.replacementInstanceId = attempt.instanceId;
    this.note(`${kind} replacement ${attempt.instanceId} is InService`);
  }

  /** desired + 1 as read a moment ago, then this workflow's own polls. Returns whether a new instance is InService. */
  private async scaleOut(attempt: ScaleAttempt, label: 'spot' | 'on-demand', wait: PollWait): Promise<boolean> {
    this.enterCapacityPhase(label === 'spot' ? 'scaling-spot' : 'scaling-on-demand');
    let instancesBefore: string[];
    try {
      const group = await describeGroup({ asgName: attempt.asgName });
      if (group.desiredCapacity >= group.maxSize) {
        attempt.failure = `group is at its MaxSize (${group.maxSize})`;
        return false;
      }
      // Another workflow may write between this read and this write: its increment and this one become one.
      attempt.desiredBefore = group.desiredCapacity;
      attempt.desiredTarget = group.desiredCapacity + 1;
      attempt.requestedAt = (await setDesiredCapacity({ asgName: attempt.asgName, desiredCapacity: attempt.desiredTarget })).requestedAt;
      instancesBefore = group.instances.map((i) => i.instanceId);
    } catch (error) {
      attempt.failure = `could not raise the desired capacity: ${rootMessage(error)}`;
      return false;
    }
    this.enterCapacityPhase(label === 'spot' ? 'waiting-for-spot' : 'waiting-for-on-demand');
    return this.pollForNewInstance(attempt, instancesBefore, wait);
  }

  /** A look every poll interval until a new instance is InService, a capacity problem shows, or time runs out. */
  private async pollForNewInstance(attempt: ScaleAttempt, instancesBefore: string[], { timeoutSeconds, pollSeconds }: PollWait): Promise<boolean> {
    const deadline = Date.now() + timeoutSeconds * 1000;
    for (attempt.polls = 1; ; attempt.polls++) {
      try {
        const progress = await describeScaleOut({ asgName: attempt.asgName, instancesBefore, since: attempt.requestedAt as string });
        const [fresh] = progress.newInService;
        if (fresh) {
          attempt.instanceId = fresh;
          attempt.inServiceAt = isoNow();
          return true;
        }
        if (progress.capacityProblem) {
          attempt.failure = `capacity problem: ${progress.capacityProblem.statusCode}: ${progress.capacityProblem.message}`;
          return false;
        }
      } catch (error) {
        this.note(`could not look at ${attempt.asgName} this time: ${rootMessage(error)}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        attempt.failure = `no new instance InService within ${timeoutSeconds} s`;
        return false;
      }
      await sleep(Math.min(pollSeconds * 1000, left));
    }
  }

  /** Cordon, then evict until the drain timeout; no disruption budget. Returns whether every pod left. */
  private async drain(settings: RunSettings): Promise<boolean> {
    const { nodeName } = this.input;
    this.enterPhase('draining');
    const cordoned = await steps.cordonNode({ nodeName });
    if (cordoned.nodeGone) return true;
    const { evictPods } = proxyActivities<Activities>({
      startToCloseTimeout: `${settings.drainTimeoutSeconds + 60} seconds`,
      scheduleToCloseTimeout: `${settings.drainTimeoutSeconds + 300} seconds`,
      heartbeatTimeout: '30 seconds',
      retry,
    });
    try {
      const report = await evictPods({ nodeName, deadline: new Date(Date.now() + settings.drainTimeoutSeconds * 1000).toISOString() });
      this.status.drain = { ...report, finishedAt: isoNow() };
      return report.complete;
    } catch (error) {
      this.note(`drain failed: ${rootMessage(error)}`);
      return false;
    }
  }

  private enterPhase(phase: RebalancePhase): void {
    this.status.phase = phase;
    this.status.phaseChangedAt = isoNow();
    upsertSearchAttributes([{ key: searchAttributes.phase, value: phase }]);
  }

  private enterCapacityPhase(phase: CapacityPhase): void {
    this.status.capacityPhase = phase;
  }

  private note(text: string): void {
    this.status.notes.push(`${isoNow()} ${text}`);
  }
}
