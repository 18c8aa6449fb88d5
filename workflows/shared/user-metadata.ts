// What the Temporal UI shows of Spot Guard (the SDK's user metadata): each workflow's fixed summary and details, given
// where it is started, and each activity's one-line summary, given centrally by the activity proxies. Pure functions
// of their input, free of I/O and of any SDK import: the signaler and the activities import the start summaries, the
// workflow bundle the activity summaries.
import type { SpotGuardActivities } from './activity-types.js';

/** The UI's list shows the summary in one line: what the workflow is about. */
export const workflowSummaries = {
  /** `asgName`: the group, when the starter knows it (the worker's intake has just checked it; the signaler does not). */
  rebalance: (input: { instanceId: string; nodeName: string }, asgName?: string): string =>
    `rebalance ${input.instanceId} on node ${input.nodeName}${asgName ? ` (group ${asgName})` : ''}`,
  capacity: (asgName: string): string => `capacity of ${asgName}`,
  monitor: (spotAsgName: string, onDemandAsgName: string): string => `revert-to-spot monitor ${spotAsgName} ↔ ${onDemandAsgName}`,
  webhook: (): string => 'webhook delivery',
};

/** The fixed details: what the workflow does, in a sentence (the current details say what it waits for now). */
export const workflowDetails = {
  rebalance: (cause: 'rebalance recommendation' | 'interruption notice' | 'surplus', notice?: { action?: string; time?: string; surplusFor?: string }): string =>
    cause === 'surplus'
      ? `Started by the spot group's capacity workflow: the group launched this instance on its own for ${notice?.surplusFor ?? 'a warned instance'}, which left without a decrement, and its +1 now stands for this one: no +1, taint, drain, then terminate with decrement.`
      : cause === 'interruption notice'
      ? `Started by a spot interruption notice (${notice?.action ?? 'unknown action'} at ${notice?.time ?? 'an unknown time'}): taint and drain at once, replacement capacity beside it.`
      : `Started by a rebalance recommendation${notice?.time ? ` (noticed ${notice.time})` : ''}: replacement capacity first (spot +1, on-demand fallback), then taint and drain.`,
  capacity: (asgName: string): string =>
    `Every desired-capacity change of ${asgName} goes through this workflow; it polls the group for the rebalances waiting for new instances, keeps its disruption budget and its books.`,
  monitor: (spotAsgName: string, onDemandAsgName: string): string =>
    `Removes the on-demand fallback instances of ${onDemandAsgName} one at a time once ${spotAsgName} has been healthy for the stability window, only when their pods can move.`,
  webhook: (): string => 'Posts the announced steps chosen for the webhook (SPOT_GUARD_WEBHOOK_EVENTS) to its endpoint, one at a time in order, each retried with backoff for up to an hour.',
};

type Summarizers = { [K in keyof SpotGuardActivities]: (...args: Parameters<SpotGuardActivities[K]>) => string };

const withDecrement = (decrement: boolean | undefined): string => (decrement ? 'with decrement' : 'without decrement');
const count = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;

/** One line per activity call, from its input: what it does to what. */
const activitySummaries: Summarizers = {
  loadSettings: () => 'load the worker settings',
  describeGroup: ({ asgName }) => `describe ${asgName}`,
  describeGroupProgress: ({ asgName, instancesOnly }) => `poll ${asgName} for new instances${instancesOnly ? ' (instances only)' : ''}`,
  describeGroupHealth: ({ asgName }) => `check the health of ${asgName}`,
  setDesiredCapacity: ({ asgName, desiredCapacity, from }) => `set desired of ${asgName} to ${desiredCapacity}${from === undefined ? '' : ` (from ${from})`}`,
  terminateInstanceInGroup: ({ asgName, instanceId, decrementDesiredCapacity }) => `terminate ${instanceId} in ${asgName} ${withDecrement(decrementDesiredCapacity)}`,
  verifyInstanceInGroup: ({ instanceId, asgName }) => `verify ${instanceId} is in ${asgName}`,
  verifyProtectedInstance: ({ instanceId }) => `verify ${instanceId} is in a protected spot group`,
  describeDepartures: ({ asgName, instanceIds }) => `look how ${count(instanceIds.length, 'instance')} left ${asgName}`,
  verifyNode: ({ nodeName, instanceId }) => `verify node ${nodeName} is ${instanceId}`,
  findNodeForInstance: ({ instanceId }) => `find the node of ${instanceId}`,
  awaitNodeReady: ({ instanceId }) => `wait for the node of ${instanceId} to be Ready`,
  findUnreadyNodes: ({ instanceIds }) => `check that ${count(instanceIds.length, 'spot node')} are Ready`,
  taintNode: ({ nodeName, taint }) => `taint node ${nodeName} ${taint.key}=${taint.value}:${taint.effect}`,
  releaseNode: ({ nodeName, uncordon }) => `untaint ${uncordon === false ? '' : 'and uncordon '}node ${nodeName}`,
  cordonNode: ({ nodeName }) => `cordon node ${nodeName}`,
  evictPods: ({ nodeName, onlyRecreatable }) => `evict pods of node ${nodeName}${onlyRecreatable ? ' (those recreated elsewhere)' : ''}`,
  assessScaleDownSafety: ({ nodeName }) => `check the pods of node ${nodeName} can move`,
  awaitPodsRescheduled: ({ nodeName, owners }) => `wait for the pods of node ${nodeName} to run elsewhere (${count(owners.length, 'controller')})`,
  requestCapacityIncrease: ({ asgName, forInstanceId }) => `ask the capacity of ${asgName} for +1${forInstanceId ? ` for ${forInstanceId}` : ''}`,
  requestInstanceRetirement: ({ asgName, instanceId, terminate, decrement }) =>
    terminate ? `ask the capacity of ${asgName} to terminate ${instanceId} ${withDecrement(decrement)}` : `ask the capacity of ${asgName} whether ${instanceId} still runs`,
  requestDrainSlot: ({ asgName, nodeName, bypass }) => `ask ${asgName} for a drain slot for node ${nodeName}${bypass ? ' (notice: at once)' : ''}`,
  releaseDrainSlot: ({ asgName, requestId }) => `give the drain slot ${requestId} back to ${asgName}`,
  sendAnswers: ({ answers }) => `answer ${count(answers.length, 'waiting workflow')}`,
  reportFallbackToMonitor: ({ spotAsgName, onDemandAsgName, report }) => `report on-demand ${report.onDemandInstanceId} to the monitor of ${spotAsgName} ↔ ${onDemandAsgName}`,
  terminateUnlessNode: ({ asgName, instanceId }) => `terminate ${instanceId} in ${asgName} with decrement unless it has a node`,
  startSurplusDrain: ({ instanceId, nodeName, surplusFor, asgName }) => `start the drain of ${instanceId} (node ${nodeName}), the surplus ${asgName} launched for ${surplusFor}`,
  announceStep: ({ step, instanceId, nodeName }) => `announce ${step} of ${instanceId}${nodeName ? ` on node ${nodeName}` : ''}`,
  postWebhook: ({ id }) => `post webhook message ${id}`,
};

/** An activity's summary; a summary is only a label, so a malformed input gets none instead of failing the call. */
export function activitySummary(name: string, args: unknown[]): string | undefined {
  const summarize = (activitySummaries as Record<string, ((...a: unknown[]) => string) | undefined>)[name];
  try {
    return summarize?.(...args);
  } catch {
    return undefined;
  }
}

type WithOptions = { executeWithOptions(options: { summary?: string }, args: unknown[]): Promise<unknown> };

/**
 * An activity proxy (of proxyActivities or proxyLocalActivities) whose every call carries its summary: the call sites
 * stay as they are, destructured or not.
 */
export function withSummaries<P extends object>(proxy: P): P {
  return new Proxy(proxy, {
    get(target, name, receiver) {
      const activity = Reflect.get(target, name, receiver) as unknown;
      if (typeof name !== 'string' || typeof (activity as Partial<WithOptions> | undefined)?.executeWithOptions !== 'function') return activity;
      return (...args: unknown[]) => {
        const summary = activitySummary(name, args);
        return (activity as WithOptions).executeWithOptions(summary === undefined ? {} : { summary }, args);
      };
    },
  });
}
