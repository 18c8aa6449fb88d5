// What the Temporal UI shows of Spot Guard, read back from the server: each workflow's summary and fixed details (the
// client's describe()), what it waits for now (its current details, by the SDK's __temporal_workflow_metadata query,
// as the UI asks) and the summary each activity carries in the history (ActivityTaskScheduled, and the marker of a
// local activity). The time-skipping test server keeps no summary given with Signal-with-Start (the capacity
// workflows' and a notice's start): those are read from the real dev server.
import assert from 'node:assert/strict';
import type { WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { ensureMonitor } from '../activities/monitor-requests.js';
import { reportInterruption, requestRebalance } from '../signaler/workflow-requests.js';
import { capacityWorkflowId, monitorWorkflowId, rebalanceWorkflowId } from '../workflows/shared/ids.js';
import { INSUFFICIENT_CAPACITY } from './fakes/auto-scaling.js';
import { Harness } from './helpers/harness.js';
import { createDevServerEnv, createTimeSkippingEnv } from './helpers/temporal.js';
import { activityNames, waitForStatus } from './helpers/workflows.js';
import { until } from '../scripts/peers/wait.js';

const SECOND = 1000;
const TAINT = 'spot-instance-terminating=true:NoSchedule';

/** The workflow's summary and details as the UI's list and header show them. */
async function shownOf(handle: WorkflowHandle): Promise<{ summary?: string; details?: string; current: string }> {
  const description = await handle.describe();
  return { summary: await description.staticSummary(), details: await description.staticDetails(), current: await currentDetails(handle) };
}

async function currentDetails(handle: WorkflowHandle): Promise<string> {
  const metadata = await handle.query<temporal.api.sdk.v1.IWorkflowMetadata>('__temporal_workflow_metadata');
  return metadata.currentDetails ?? '';
}

/** Waits (in real time: the server's clock is not skipped meanwhile) until the current details match. */
async function untilDetails(handle: WorkflowHandle, pattern: RegExp): Promise<string> {
  let last = '';
  await until(`current details matching ${pattern}`, async () => pattern.test((last = await currentDetails(handle).catch(() => ''))), 20_000, () => `last: ${last}`);
  return last;
}

/** Every activity's summary, in history order, local activities (recorded as markers) included. */
async function activitySummaries(handle: WorkflowHandle): Promise<string[]> {
  const events = (await handle.fetchHistory()).events ?? [];
  const scheduled = events.filter((e) => e.activityTaskScheduledEventAttributes || e.markerRecordedEventAttributes?.markerName === 'core_local_activity');
  return scheduled.map((e) => (e.userMetadata?.summary ? defaultPayloadConverter.fromPayload<string>(e.userMetadata.summary) : '(none)'));
}

/** Every activity carries a summary: as many summaries as activities, none missing. */
async function assertEveryActivitySummarized(handle: WorkflowHandle): Promise<string[]> {
  const summaries = await activitySummaries(handle);
  assert.equal(summaries.length, (await activityNames(handle)).length);
  assert.ok(!summaries.includes('(none)'), summaries.join('\n'));
  return summaries;
}

let env: TestWorkflowEnvironment;
let h: Harness;
let atRisk: string;

/** A spot group of three (the at-risk node with one pod) and an empty on-demand group. */
async function setUp(environment: TestWorkflowEnvironment): Promise<void> {
  env = environment;
  h = await new Harness(env).start();
  [atRisk] = h.aws.addGroup(h.spot, { desired: 3, max: 10 });
  h.aws.addGroup(h.onDemand, { desired: 0, max: 5 });
  h.k8s.addNode({ name: 'node-a', instanceId: atRisk });
  h.k8s.addPod({ name: 'web-1', nodeName: 'node-a', ownerKind: 'ReplicaSet' });
}

const rebalance = (): WorkflowHandle => env.client.workflow.getHandle(rebalanceWorkflowId(atRisk));
const capacity = (asgName: string): WorkflowHandle => env.client.workflow.getHandle(capacityWorkflowId(asgName));

describe('what the Temporal UI shows (user metadata, time-skipping server)', function () {
  beforeEach(async function () {
    await setUp(await createTimeSkippingEnv());
  });
  afterEach(async function () {
    await h?.stop();
    await env?.teardown();
  });

  it('spot success: the rebalance names its instance and node, says it waits for the +1, and every step is summarized', async function () {
    h.aws.setLaunch(h.spot, { kind: 'in-service-after-looks', looks: 3 });
    await h.run(async () => {
      // As the worker's intake starts it, naming the group it checked.
      await requestRebalance(env.client, h.taskQueue, { instanceId: atRisk, nodeName: 'node-a' }, h.spot);
      // The spot +1 is granted and its instance still launching: the run waits for the capacity workflow's polls.
      const waiting = await untilDetails(rebalance(), /^waiting for the spot \+1 instance/);
      assert.match(waiting, new RegExp(`^waiting for the spot \\+1 instance of ${h.spot} to be InService \\(desired 3 → 4, polled every 10 s, up to 120 s\\)$`));
      assert.match(await currentDetails(capacity(h.spot)), new RegExp(`^capacity of ${h.spot}\\n1 rebalance\\(s\\) waiting for new instances`));
      await rebalance().result();

      const shown = await shownOf(rebalance());
      assert.equal(shown.summary, `rebalance ${atRisk} on node node-a (group ${h.spot})`);
      assert.match(shown.details ?? '', /rebalance recommendation/);
      assert.match(shown.current, /^done: replacement spot i-[0-9a-f]+, instance terminated$/);
      const steps = await assertEveryActivitySummarized(rebalance());
      // The announcements (Events, metrics, webhooks) come between the flow's own steps.
      assert.ok(steps.includes(`announce notice-received of ${atRisk} on node node-a`), steps.join(' | '));
      const flowSteps = steps.filter((step) => !step.startsWith('announce '));
      assert.deepEqual(flowSteps.slice(0, 4), ['load the worker settings', `verify node node-a is ${atRisk}`, `verify ${atRisk} is in a protected spot group`, `ask the capacity of ${h.spot} for +1 for ${atRisk}`]);
      for (const step of [`taint node node-a ${TAINT}`, 'cordon node node-a', 'evict pods of node node-a (those recreated elsewhere)', `ask the capacity of ${h.spot} to terminate ${atRisk} with decrement`]) {
        assert.ok(steps.includes(step), `${step} in ${steps.join(' | ')}`);
      }

      const changes = await assertEveryActivitySummarized(capacity(h.spot));
      assert.ok(changes.includes(`set desired of ${h.spot} to 4 (from 3)`), changes.join(' | '));
      assert.ok(changes.includes(`terminate ${atRisk} in ${h.spot} with decrement`), changes.join(' | '));
      assert.ok(changes.includes(`poll ${h.spot} for new instances`), changes.join(' | '));
    });
  });

  it('held for lack of capacity: the details say so, with both groups\' reasons, until AWS reclaims the instance', async function () {
    h.aws.setLaunch(h.spot, { kind: 'capacity-error', message: INSUFFICIENT_CAPACITY });
    h.aws.setLaunch(h.onDemand, { kind: 'capacity-error', message: 'Could not launch On-Demand Instances. InsufficientInstanceCapacity - There is no capacity.' });
    await h.run(async () => {
      await requestRebalance(env.client, h.taskQueue, { instanceId: atRisk, nodeName: 'node-a' });
      await waitForStatus(rebalance(), (s) => s.phase === 'holding');
      const held = await currentDetails(rebalance());
      assert.match(held, /^held for lack of capacity \(spot: capacity problem: .*sufficient m5\.large capacity.*; on-demand: capacity problem: .*InsufficientInstanceCapacity.*\): node node-a tainted/);
      assert.ok((await activitySummaries(capacity(h.onDemand))).includes(`set desired of ${h.onDemand} to 1 (from 0)`));

      h.aws.reclaim(atRisk);
      await rebalance().result();
      assert.equal(await currentDetails(rebalance()), 'done: replacement capacity-unavailable, instance reclaimed-by-aws');
      const steps = await assertEveryActivitySummarized(rebalance());
      assert.ok(steps.includes(`ask the capacity of ${h.onDemand} for +1`), steps.join(' | '));
      assert.ok(steps.includes(`ask the capacity of ${h.spot} whether ${atRisk} still runs`), steps.join(' | '));
    });
  });

  it('the monitor names its pair and counts the healthy seconds of the stability window', async function () {
    const monitor = env.client.workflow.getHandle(monitorWorkflowId(h.spot, h.onDemand));
    h.aws.instanceIds(h.spot).filter((id) => id !== atRisk).forEach((instanceId, i) => h.k8s.addNode({ name: `spot-${i}`, instanceId }));
    await h.run(async () => {
      await ensureMonitor(env.client, h.taskQueue, h.spot, h.onDemand);
      const pair = `${h.spot} ↔ ${h.onDemand}`;
      const [first, fallbacks] = (await untilDetails(monitor, /stability window/)).split('\n');
      assert.ok(first?.startsWith(`${pair}: `), first);
      assert.match(first ?? '', /healthy for 0 s of the 120 s stability window \(checked every 30 s\)/);
      assert.match(fallbacks ?? '', /^0 on-demand fallback.*0 removed/);
      await env.sleep(45 * SECOND);
      await untilDetails(monitor, /^\S+ ↔ \S+: spot healthy for 30 s of the 120 s stability window/);
      await env.sleep(120 * SECOND);
      await untilDetails(monitor, /^\S+ ↔ \S+: spot stable: nothing to remove now/);

      const shown = await shownOf(monitor);
      assert.equal(shown.summary, `revert-to-spot monitor ${pair}`);
      assert.match(shown.details ?? '', new RegExp(`once ${h.spot} has been healthy for the stability window`));
      const checks = await assertEveryActivitySummarized(monitor);
      assert.deepEqual(checks.slice(0, 4), ['load the worker settings', `check the health of ${h.spot}`, 'check that 3 spot nodes are Ready', `describe ${h.onDemand}`]);
    });
  });
});

describe('what the Temporal UI shows of workflows started by Signal-with-Start (Temporal dev server)', function () {
  // One server for the block's one test (a few seconds to start).
  let stopServer: (() => Promise<void>) | undefined;
  before(async function () {
    const dev = await createDevServerEnv();
    stopServer = () => dev.teardown();
    await setUp(dev.env);
  });
  after(async function () {
    await h?.stop();
    await stopServer?.();
  });

  it('an interruption notice: the rebalance and both capacity workflows carry their summaries', async function () {
    this.timeout(120_000);
    h.aws.setLaunch(h.spot, { kind: 'capacity-error', message: INSUFFICIENT_CAPACITY });
    h.aws.setLaunch(h.onDemand, { kind: 'in-service-after-looks', looks: 1 });
    await h.run(async () => {
      await reportInterruption(env.client, h.taskQueue, { instanceId: atRisk, nodeName: 'node-a' }, { action: 'terminate', time: '2026-12-03T05:00:00Z' });
      await rebalance().result();
      const shown = await shownOf(rebalance());
      assert.equal(shown.summary, `rebalance ${atRisk} on node node-a`);
      assert.match(shown.details ?? '', /spot interruption notice \(terminate at 2026-12-03T05:00:00Z\)/);
      assert.match(shown.current, /^done: replacement on-demand i-[0-9a-f]+, instance terminated\ninterruption notice: terminate at 2026-12-03T05:00:00Z$/);
      for (const asgName of [h.spot, h.onDemand]) {
        const group = await shownOf(capacity(asgName));
        assert.equal(group.summary, `capacity of ${asgName}`);
        assert.match(group.details ?? '', new RegExp(`Every desired-capacity change of ${asgName} goes through this workflow`));
        assert.match(group.current, new RegExp(`^capacity of ${asgName}\\n`));
      }
      const onDemandChanges = await assertEveryActivitySummarized(capacity(h.onDemand));
      assert.ok(onDemandChanges.includes(`set desired of ${h.onDemand} to 1 (from 0)`), onDemandChanges.join(' | '));
    });
  });
});
