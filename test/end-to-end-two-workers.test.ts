// End-to-end with two worker processes on one Temporal server, the same task queues and groups, as the Deployment's two
// replicas run: the one holding a rebalance flow is SIGKILLed mid-flow, the other finishes it, and the books are exact
// (one +1, one termination with decrement, no extra instance, no node tainted without a run). Both boot at the same
// moment, so what each does once at start (search attributes, the pair's monitor) is done once between them.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { WorkflowHandle } from '@temporalio/client';
import proto from '@temporalio/proto';
import { requestRebalance } from '../signaler/workflow-requests.js';
import { rebalanceStatusQuery } from '../workflows/rebalance/api.js';
import { capacityWorkflowId, monitorWorkflowId, rebalanceWorkflowId } from '../workflows/shared/ids.js';
import type { rebalanceWorkflow } from '../workflows/rebalance/workflow.js';
import { searchAttributes } from '../workflows/shared/search-attributes.js';
import { until } from '../scripts/peers/wait.js';
import { EndToEnd, ON_DEMAND, SPOT, TASK_QUEUE, type WorkerProcess } from '../scripts/peers/end-to-end.js';
import { scenarioPassed } from './helpers/scenario-count.js';

type HistoryEvent = proto.temporal.api.history.v1.IHistoryEvent;

/** Who completed each workflow task of a workflow, in order: the worker identities its history records. */
async function workflowTaskCompleters(e2e: EndToEnd, workflowId: string): Promise<string[]> {
  const history = await e2e.client.workflow.getHandle(workflowId).fetchHistory();
  return (history.events ?? []).flatMap((event: HistoryEvent) => {
    const identity = event.workflowTaskCompletedEventAttributes?.identity;
    return identity ? [identity] : [];
  });
}

/**
 * The recorded starts of an activity: one per activity (the attempt that ended it, with who ran it), as the server
 * writes a retried activity's start only when it ends.
 */
async function activityStarts(handle: WorkflowHandle, activityType: string): Promise<proto.temporal.api.history.v1.IActivityTaskStartedEventAttributes[]> {
  const events = (await handle.fetchHistory()).events ?? [];
  const scheduled = new Set(events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === activityType).map((e) => Number(e.eventId)));
  return events.flatMap((e) => (e.activityTaskStartedEventAttributes && scheduled.has(Number(e.activityTaskStartedEventAttributes.scheduledEventId)) ? [e.activityTaskStartedEventAttributes] : []));
}

async function workflowIdsOf(e2e: EndToEnd, query: string): Promise<string[]> {
  const ids: string[] = [];
  for await (const workflow of e2e.client.workflow.list({ query })) ids.push(workflow.workflowId);
  return ids.sort();
}

interface Flow {
  atRisk: string;
  nodeName: string;
  pod: string;
  handle: WorkflowHandle<typeof rebalanceWorkflow>;
  workersStartedAt: Date;
}

describe('end to end: two worker processes, one SIGKILLed mid-flow', function () {
  this.timeout(300_000);
  let e2e: EndToEnd;
  let workers: WorkerProcess[] = [];

  before(async function () {
    e2e = await new EndToEnd().start();
  });
  after(async () => e2e?.stop());
  afterEach(async function () {
    if (this.currentTest?.state === 'passed') scenarioPassed('crash and fault', this.currentTest.title);
    if (this.currentTest?.state === 'failed') for (const worker of workers) console.error(`worker ${worker.identity} output:\n${worker.log().slice(-4000)}`);
    await Promise.all(workers.map((worker) => worker.stop()));
  });

  /** Fresh groups and a spot node with a pod, then two workers started at the same moment, then the notice. */
  async function startFlow(prepare: () => Promise<unknown>): Promise<Flow> {
    // The groups before the workers, so the monitor each worker ensures at start is the one that stays.
    const { atRisk, nodeName, pod } = await e2e.spotNodeWithPod();
    const workersStartedAt = new Date();
    workers = await e2e.startWorkers(2);
    await prepare();
    await requestRebalance(e2e.client, TASK_QUEUE, { instanceId: atRisk, nodeName });
    return { atRisk, nodeName, pod, handle: e2e.client.workflow.getHandle(rebalanceWorkflowId(atRisk)), workersStartedAt };
  }

  /** The flow ends as a crash-free spot success does, the survivor did the rest, and stops cleanly. */
  async function assertFinishedBySurvivor(flow: Flow, takeover: Takeover): Promise<void> {
    const result = await flow.handle.result();
    console.log(`      the survivor ended the flow ${((Date.now() - takeover.killedAt) / 1000).toFixed(1)} s after the kill`);
    assert.equal(result.replacement, 'spot');
    assert.equal(result.drained, true);
    assert.equal(result.instanceFate, 'terminated');
    await assertTheBooks(e2e, { ...flow, replacement: result.replacementInstanceId });
    await assertTheSurvivorTookOver(e2e, takeover);
    await assertNothingDoubled(e2e, flow);

    // The killed process is gone and reaped (no zombie); the survivor stops cleanly on SIGTERM, as in a rollout (exit
    // status 0: its pollers drained and its tasks in hand finished).
    const { killed, survivor } = takeover;
    assert.deepEqual(await killed.exited, { code: null, signal: 'SIGKILL' });
    assert.ok(!existsSync(`/proc/${killed.child.pid}`), `the killed worker (pid ${killed.child.pid}) left no process behind`);
    await survivor.stop();
    assert.deepEqual(await survivor.exited, { code: 0, signal: null }, `the survivor stopped cleanly:\n${survivor.log().slice(-2000)}`);
  }

  it('the worker holding the flow is killed while the spot +1 waits for its instance: the other finishes it, the books exact', async function () {
    // The new spot instance is InService 20 s after the +1: the flow waits on its group's 10 s poll meanwhile.
    const flow = await startFlow(() => e2e.aws.delay(SPOT, 20));
    await waitForTheIncreaseInFlight(e2e, flow.handle);
    const holder = (await workflowTaskCompleters(e2e, flow.handle.workflowId)).at(-1);
    const takeover = await kill(e2e, workers, holder, flow.handle.workflowId);
    await assertFinishedBySurvivor(flow, takeover);
  });

  it('the worker running the drain is killed while a PodDisruptionBudget blocks it: the other drains, the books exact', async function () {
    const budget = `block-${Date.now()}`;
    const flow = await startFlow(() =>
      e2e.k8s.policyApi().createNamespacedPodDisruptionBudget({ namespace: 'default', body: { metadata: { name: budget }, spec: { minAvailable: 1, selector: { matchLabels: {} } } } }),
    );
    const drainer = await waitForTheDrainRunning(flow.handle);
    const takeover = await kill(e2e, workers, drainer, flow.handle.workflowId);
    await e2e.k8s.policyApi().deleteNamespacedPodDisruptionBudget({ namespace: 'default', name: budget });
    await assertFinishedBySurvivor(flow, takeover);
    const drains = await activityStarts(flow.handle, 'evictPods');
    assert.ok(drains.length === 1 && drains[0]?.identity === takeover.survivor.identity && (drains[0]?.attempt ?? 0) >= 2, `the drain retried by the survivor: ${JSON.stringify(drains)}`);
  });
});

/**
 * The drain is running (the workflow's SpotGuardPhase is draining) and has been started by a worker, which is
 * returned; a few evictions refused by the budget since, read from the activity's heartbeats.
 */
async function waitForTheDrainRunning(handle: WorkflowHandle<typeof rebalanceWorkflow>): Promise<string> {
  let drainer = '';
  await until('the drain to run on one of the workers', async () => {
    const description = await handle.describe();
    if (description.typedSearchAttributes.get(searchAttributes.phase) !== 'draining') return false;
    const drain = description.raw.pendingActivities?.find((activity) => activity.activityType?.name === 'evictPods');
    drainer = drain?.lastWorkerIdentity ?? '';
    return drain?.state === proto.temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED && drain.lastHeartbeatTime != null;
  }, 120_000);
  return drainer;
}

/**
 * The moment that matters: the spot +1 is applied (one SetDesiredCapacity reached AWS) and its instance is not yet
 * InService, so the flow waits on its group's poll. Read from the workflow's state and from AWS, not guessed by time.
 */
async function waitForTheIncreaseInFlight(e2e: EndToEnd, handle: WorkflowHandle<typeof rebalanceWorkflow>): Promise<void> {
  await until('the rebalance flow waiting for its spot instance', async () => (await handle.query(rebalanceStatusQuery)).capacityPhase === 'waiting-for-spot', 120_000);
  assert.equal((await e2e.aws.counts()).byAction.SetDesiredCapacity, 1, 'the +1 reached AWS once');
  const spot = await e2e.aws.instances(SPOT);
  assert.equal(spot.desired, 3);
  assert.ok(spot.instances.some((i) => i.state !== 'InService'), `the new instance is still launching: ${JSON.stringify(spot.instances)}`);
}

interface Takeover {
  killed: WorkerProcess;
  survivor: WorkerProcess;
  /** Per workflow id, how many of its workflow tasks were completed when the worker was killed. */
  completedBefore: Map<string, number>;
  killedAt: number;
}

/**
 * SIGKILLs the worker of that identity: in the flow's history it completed the workflow's last task (its cache holds
 * the flow, whose next tasks go to its sticky queue first) or started the running drain. Counts what the flow's two
 * workflows had completed until then.
 */
async function kill(e2e: EndToEnd, workers: WorkerProcess[], identity: string | undefined, rebalanceId: string): Promise<Takeover> {
  const killed = workers.find((worker) => worker.identity === identity);
  const survivor = workers.find((worker) => worker !== killed);
  assert.ok(killed && survivor, `the flow's history names one of the two workers (${identity}; workers ${workers.map((w) => w.identity).join(', ')})`);
  killed.kill();
  await killed.exited;
  const completedBefore = new Map<string, number>();
  const held: string[] = [];
  for (const workflowId of [rebalanceId, capacityWorkflowId(SPOT)]) {
    const completers = await workflowTaskCompleters(e2e, workflowId);
    completedBefore.set(workflowId, completers.length);
    if (completers.at(-1) === killed.identity) held.push(workflowId);
  }
  console.log(`      SIGKILLed worker ${killed.identity}, the last to complete a task of: ${held.join(', ') || 'neither workflow'}`);
  return { killed, survivor, completedBefore, killedAt: Date.now() };
}

/** Where a crash-free spot-success run ends, and exactly one change of each kind reached AWS. */
async function assertTheBooks(e2e: EndToEnd, flow: { atRisk: string; nodeName: string; pod: string; replacement?: string }): Promise<void> {
  const spot = await e2e.group(SPOT);
  assert.equal(spot.desired, 2, 'back to its starting size: one +1, one decrement');
  assert.equal(spot.instances.length, 2, 'one replacement, no extra instance');
  assert.ok(!spot.instances.some((i) => i.id === flow.atRisk), 'the warned instance is gone');
  assert.ok(spot.instances.some((i) => i.id === flow.replacement && i.state === 'InService'), 'the replacement is InService');
  const onDemand = await e2e.group(ON_DEMAND);
  assert.deepEqual([onDemand.desired, onDemand.instances.length], [0, 0], 'no on-demand fallback');
  const counts = (await e2e.aws.counts()).byAction;
  assert.equal(counts.SetDesiredCapacity, 1, 'desired capacity was raised once, never twice');
  assert.equal(counts.TerminateInstanceInAutoScalingGroup, 1, 'one termination');
  await until('the pod to be evicted', async () => e2e.core.readNamespacedPod({ namespace: 'default', name: flow.pod }).then(() => false, () => true));
  assert.deepEqual(await e2e.nodeState(flow.nodeName), { taints: ['spot-instance-terminating=true:NoSchedule'], cordoned: true });
  // The nodes of the groups' instances (the replacement, the other spot node) carry no Spot Guard taint and no cordon:
  // nothing was left tainted without a run to finish it.
  for (const { id } of [...spot.instances, ...onDemand.instances]) {
    assert.deepEqual(await e2e.nodeState(EndToEnd.nodeName(id)), { taints: [], cordoned: false }, `the node of ${id}`);
  }
}

/** Every workflow task of the flow's two workflows after the kill was completed by the survivor, and there were some. */
async function assertTheSurvivorTookOver(e2e: EndToEnd, { killed, survivor, completedBefore }: Takeover): Promise<void> {
  for (const [workflowId, before] of completedBefore) {
    const completers = await workflowTaskCompleters(e2e, workflowId);
    const afterTheKill = completers.slice(before);
    assert.ok(afterTheKill.length > 0, `${workflowId}: workflow tasks after the kill`);
    assert.deepEqual(new Set(afterTheKill), new Set([survivor.identity]), `${workflowId}: the survivor (${survivor.identity}) finished it, not ${killed.identity}`);
  }
}

/** What each worker does once at start is done once between the two (one monitor run), and one capacity workflow. */
async function assertNothingDoubled(e2e: EndToEnd, flow: Flow): Promise<void> {
  await until('the visibility store to list the flow as closed', async () => (await workflowIdsOf(e2e, `WorkflowId="${flow.handle.workflowId}" AND ExecutionStatus="Completed"`)).length === 1);
  const sinceTheWorkersStarted = `StartTime >= "${flow.workersStartedAt.toISOString()}"`;
  assert.deepEqual(await workflowIdsOf(e2e, `WorkflowType="monitorWorkflow" AND ${sinceTheWorkersStarted}`), [monitorWorkflowId(SPOT, ON_DEMAND)], 'one monitor run started by the two workers');
  assert.deepEqual(await workflowIdsOf(e2e, 'WorkflowType="monitorWorkflow" AND ExecutionStatus="Running"'), [monitorWorkflowId(SPOT, ON_DEMAND)], 'and it runs');
  assert.deepEqual(await workflowIdsOf(e2e, 'WorkflowType="capacityWorkflow" AND ExecutionStatus="Running"'), [capacityWorkflowId(SPOT)], 'one capacity workflow, for the spot group only');
}
