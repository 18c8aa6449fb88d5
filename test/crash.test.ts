// Crash and fault tests on the real peers: the worker SIGKILLed at each step of a rebalance flow and replaced, the
// Temporal dev server restarted mid-flow on its database, AWS throttling every request for a while, the Kubernetes
// API server gone for a while. Each flow must end exactly where a crash-free run ends: nothing lost, nothing twice.
import assert from 'node:assert/strict';
import type { WorkflowHandle } from '@temporalio/client';
import { requestRebalance } from '../signaler/workflow-requests.js';
import { type RebalanceStatus, rebalanceStatusQuery } from '../workflows/rebalance/api.js';
import { rebalanceWorkflowId } from '../workflows/shared/ids.js';
import type { rebalanceWorkflow } from '../workflows/rebalance/workflow.js';
import { until } from '../scripts/peers/wait.js';
import { EndToEnd, ON_DEMAND, SPOT, TASK_QUEUE } from '../scripts/peers/end-to-end.js';
import { scenarioPassed } from './helpers/scenario-count.js';

describe('crash and fault tests on the real peers', function () {
  this.timeout(300_000);
  let e2e: EndToEnd;

  before(async function () {
    e2e = await new EndToEnd().start();
    await e2e.startWorker();
  });
  after(async () => e2e?.stop());
  afterEach(function () {
    if (this.currentTest?.state === 'passed') scenarioPassed('crash and fault', this.currentTest.title);
    if (this.currentTest?.state === 'failed') console.error(`worker output:\n${e2e.workerLog().slice(-4000)}`);
  });

  interface Flow {
    atRisk: string;
    nodeName: string;
    pod: string;
    handle: WorkflowHandle<typeof rebalanceWorkflow>;
  }

  async function startFlow(prepare: () => Promise<void> = async () => undefined): Promise<Flow> {
    const { atRisk, nodeName, pod } = await e2e.spotNodeWithPod();
    await prepare();
    await requestRebalance(e2e.client, TASK_QUEUE, { instanceId: atRisk, nodeName });
    return { atRisk, nodeName, pod, handle: e2e.client.workflow.getHandle(rebalanceWorkflowId(atRisk)) };
  }

  async function waitForStatus(flow: Flow, predicate: (s: RebalanceStatus) => boolean): Promise<void> {
    await until('the workflow status', async () => predicate(await flow.handle.query(rebalanceStatusQuery)), 120_000);
  }

  /** Where a crash-free spot-success run ends, and exactly one change of each kind reached AWS. */
  async function assertEndsLikeACrashFreeRun(flow: Flow): Promise<void> {
    const result = await flow.handle.result();
    assert.equal(result.replacement, 'spot');
    assert.equal(result.drained, true);
    assert.equal(result.instanceFate, 'terminated');
    const spot = await e2e.group(SPOT);
    assert.equal(spot.desired, 2);
    assert.equal(spot.instances.length, 2, 'one replacement, no extra instance');
    assert.ok(!spot.instances.some((i) => i.id === flow.atRisk));
    assert.equal((await e2e.group(ON_DEMAND)).desired, 0);
    const counts = (await e2e.aws.counts()).byAction;
    assert.equal(counts.SetDesiredCapacity, 1, 'desired capacity was raised once, never twice');
    assert.equal(counts.TerminateInstanceInAutoScalingGroup, 1, 'one termination');
    await until('the pod to be evicted', async () => e2e.core.readNamespacedPod({ namespace: 'default', name: flow.pod }).then(() => false, () => true));
  }

  async function replaceWorker(): Promise<void> {
    e2e.killWorker();
    await e2e.startWorker();
  }

  it('SIGKILL right after the notice, while the input is verified, then a new worker', async function () {
    const flow = await startFlow();
    await replaceWorker();
    await assertEndsLikeACrashFreeRun(flow);
  });

  it('SIGKILL while waiting for the on-demand fallback, then a new worker', async function () {
    const flow = await startFlow(async () => {
      await e2e.aws.capacityError(SPOT);
      await e2e.aws.delay(ON_DEMAND, 15);
    });
    await waitForStatus(flow, (s) => s.capacityPhase === 'waiting-for-on-demand');
    await replaceWorker();
    const result = await flow.handle.result();
    assert.equal(result.replacement, 'on-demand');
    assert.equal(result.instanceFate, 'terminated');
    const onDemand = await e2e.group(ON_DEMAND);
    assert.equal(onDemand.desired, 1, 'one on-demand increment, not two');
    assert.equal(onDemand.instances.length, 1);
    assert.equal((await e2e.group(SPOT)).desired, 2);
    assert.equal((await e2e.aws.counts()).byAction.TerminateInstanceInAutoScalingGroup, 1);
  });

  it('SIGKILL while waiting for the new spot instance, then a new worker', async function () {
    const flow = await startFlow(() => e2e.aws.delay(SPOT, 20).then(() => undefined));
    await waitForStatus(flow, (s) => s.capacityPhase === 'waiting-for-spot');
    await replaceWorker();
    await assertEndsLikeACrashFreeRun(flow);
  });

  it('SIGKILL in the middle of a drain blocked by a PodDisruptionBudget, then a new worker', async function () {
    let budget = '';
    const flow = await startFlow(async () => {
      budget = `block-${Date.now()}`;
      await e2e.k8s.policyApi().createNamespacedPodDisruptionBudget({
        namespace: 'default',
        body: { metadata: { name: budget }, spec: { minAvailable: 1, selector: { matchLabels: {} } } },
      });
    });
    await waitForStatus(flow, (s) => s.phase === 'draining');
    await new Promise((resolve) => setTimeout(resolve, 2000)); // a few refused evictions
    await replaceWorker();
    await e2e.k8s.policyApi().deleteNamespacedPodDisruptionBudget({ namespace: 'default', name: budget });
    await assertEndsLikeACrashFreeRun(flow);
  });

  it('SIGKILL while terminating the drained instance (AWS throttling it), then a new worker', async function () {
    const flow = await startFlow();
    await waitForStatus(flow, (s) => s.replacement === 'spot');
    await e2e.aws.throttle(15);
    await waitForStatus(flow, (s) => s.phase === 'retiring-instance');
    await new Promise((resolve) => setTimeout(resolve, 2000));
    await replaceWorker();
    await assertEndsLikeACrashFreeRun(flow);
    assert.ok(((await e2e.aws.counts()).throttled.TerminateInstanceInAutoScalingGroup ?? 0) + ((await e2e.aws.counts()).throttled.DescribeAutoScalingGroups ?? 0) > 0);
  });

  it('the Temporal dev server restarted mid-flow on its database', async function () {
    const flow = await startFlow(() => e2e.aws.delay(SPOT, 20).then(() => undefined));
    await waitForStatus(flow, (s) => s.capacityPhase === 'waiting-for-spot');
    await e2e.restartTemporal(3000);
    await assertEndsLikeACrashFreeRun(flow);
  });

  it('AWS answers every Auto Scaling request with Throttling for 20 s', async function () {
    const flow = await startFlow(() => e2e.aws.throttle(20).then(() => undefined));
    await assertEndsLikeACrashFreeRun(flow);
    const throttled = (await e2e.aws.counts()).throttled;
    assert.ok(Object.values(throttled).reduce((a, b) => a + b, 0) > 0, `requests were throttled: ${JSON.stringify(throttled)}`);
  });

  it('the Kubernetes API server unreachable for 20 s in the middle of the flow', async function () {
    const flow = await startFlow(() => e2e.aws.delay(SPOT, 5).then(() => undefined));
    await waitForStatus(flow, (s) => s.capacityPhase === 'waiting-for-spot');
    await e2e.k8s.stopApiserver();
    await new Promise((resolve) => setTimeout(resolve, 20_000));
    await e2e.k8s.startApiserver();
    await assertEndsLikeACrashFreeRun(flow);
  });
});
