// End-to-end with many pairs: the real worker process finds three spot/on-demand pairs by their tags in moto (and the
// bad tags beside them), against the Temporal dev server and a real Kubernetes control plane with kwok. Notices on
// nodes of different groups go to their own pairs; a fallback is reverted by its own pair's monitor only; a node of
// an untagged group is refused, until the group is tagged.
import assert from 'node:assert/strict';
import { CreateOrUpdateTagsCommand } from '@aws-sdk/client-auto-scaling';
import type { WorkflowFailedError } from '@temporalio/client';
import { ENABLED_TAG, FALLBACK_TAG, ON_DEMAND_ROLE, ROLE_TAG } from '../activities/pair-rules.js';
import { EndToEnd, TASK_QUEUE } from '../scripts/peers/end-to-end.js';
import { until } from '../scripts/peers/wait.js';
import { requestRebalance } from '../signaler/workflow-requests.js';
import { monitorStatusQuery } from '../workflows/monitor/api.js';
import { rebalanceStatusQuery } from '../workflows/rebalance/api.js';
import type { rebalanceWorkflow } from '../workflows/rebalance/workflow.js';
import { capacityWorkflowId, monitorWorkflowId, rebalanceWorkflowId } from '../workflows/shared/ids.js';
import { scenarioPassed } from './helpers/scenario-count.js';

const PAIRS = ['p1', 'p2', 'p3'].map((p) => ({ spot: `${p}-spot`, onDemand: `${p}-od` }));
const spotTags = (fallback: string) => ({ [ENABLED_TAG]: 'true', [FALLBACK_TAG]: fallback });
const onDemandTags = { [ROLE_TAG]: ON_DEMAND_ROLE };
/** Bad tags, each to be reported once: a group its own fallback, a fallback that does not exist, two spot groups each other's fallback. */
const BAD = [
  { name: 'bad-self', desired: 0, tags: spotTags('bad-self') },
  { name: 'bad-missing', desired: 0, tags: spotTags('no-such-group') },
  { name: 'bad-x', desired: 0, tags: spotTags('bad-y') },
  { name: 'bad-y', desired: 0, tags: spotTags('bad-x') },
];

describe('end to end with many pairs found by tags (real worker, moto, Kubernetes)', function () {
  this.timeout(240_000);
  let e2e: EndToEnd;

  before(async function () {
    e2e = await new EndToEnd().start();
    await e2e.createGroups([
      ...PAIRS.flatMap((p) => [{ name: p.spot, desired: 2, tags: spotTags(p.onDemand) }, { name: p.onDemand, desired: 0, tags: onDemandTags }]),
      { name: 'plain', desired: 1 },
      { name: 'plain-od', desired: 0, tags: onDemandTags },
      ...BAD,
    ]);
    // No SPOT_ASG_NAME / ON_DEMAND_ASG_NAME: the tags are the one source of pairs; a discovery every 5 s.
    await e2e.startWorker({ SPOT_ASG_NAME: '', ON_DEMAND_ASG_NAME: '', SPOT_GUARD_PAIR_DISCOVERY: 'tags', SPOT_GUARD_PAIR_REFRESH_INTERVAL: '5s', LOG_LEVEL: 'INFO' });
  });
  after(async function () {
    await e2e?.stop();
  });
  afterEach(function () {
    if (this.currentTest?.state === 'passed') scenarioPassed('end-to-end', this.currentTest.title);
    if (this.currentTest?.state === 'failed') console.error(`worker output:\n${e2e.workerLog().slice(-6000)}`);
  });

  /** A spot node of the group with an application pod, and the notice for it. */
  async function notice(group: string, index = 0): Promise<{ instanceId: string; nodeName: string }> {
    const instanceId = (await e2e.group(group)).instances[index]?.id ?? '';
    const nodeName = EndToEnd.nodeName(instanceId);
    await until(`the node of ${instanceId}`, async () => (await e2e.core.readNode({ name: nodeName }).catch(() => undefined)) !== undefined);
    await e2e.pod(nodeName, `web-${instanceId.slice(-6)}`);
    await requestRebalance(e2e.client, TASK_QUEUE, { instanceId, nodeName });
    return { instanceId, nodeName };
  }

  /** The worker's log messages (JSON lines: their quotes escaped in the raw text). */
  const logMessages = (): string[] =>
    e2e
      .workerLog()
      .split('\n')
      .flatMap((line) => {
        try {
          return [String((JSON.parse(line) as { message?: unknown }).message)];
        } catch {
          return [];
        }
      });

  const desiredChangesSince = async (since: number): Promise<string[]> =>
    [...new Set((await e2e.aws.timeline()).desiredLog.filter(([time]) => time * 1000 >= since).map(([, group]) => group))].sort();

  it('finds the three tagged pairs, starts one monitor per pair, and reports each bad tag once however many discoveries find it', async function () {
    const expected = PAIRS.map((p) => `${p.spot} → ${p.onDemand}`).join(', ');
    await until('the pairs found by tags', async () => e2e.workerLog().includes(`pairs found by tags: ${expected}`));
    await new Promise((resolve) => setTimeout(resolve, 12_000)); // at least two more discoveries
    const badTagLines = logMessages().filter((message) => message.startsWith('bad pair tags'));
    for (const group of ['bad-self', 'bad-missing']) assert.equal(badTagLines.filter((line) => line.includes(`"${group}"`)).length, 1, `${group}:\n${badTagLines.join('\n')}`);
    assert.equal(badTagLines.filter((line) => line.includes('"bad-x"') && line.includes('"bad-y"')).length, 1, badTagLines.join('\n'));
    assert.equal(badTagLines.length, 3, badTagLines.join('\n'));
    for (const pair of PAIRS) {
      const description = await e2e.client.workflow.getHandle(monitorWorkflowId(pair.spot, pair.onDemand)).describe();
      assert.equal(description.status.name, 'RUNNING', `the monitor of ${pair.spot}`);
    }
  });

  it('notices on nodes of different groups go to their own pairs: their own capacity workflows, desired changed only in their groups', async function () {
    const since = Date.now();
    const [first, second] = await Promise.all([notice('p1-spot'), notice('p2-spot')]);
    for (const [warned, group] of [[first, 'p1-spot'], [second, 'p2-spot']] as const) {
      const handle = e2e.client.workflow.getHandle<typeof rebalanceWorkflow>(rebalanceWorkflowId(warned.instanceId));
      const result = await handle.result();
      assert.equal(result.replacement, 'spot');
      assert.equal(result.instanceFate, 'terminated');
      assert.equal((await handle.query(rebalanceStatusQuery)).spot.asgName, group);
      const spot = await e2e.group(group);
      assert.equal(spot.desired, 2, `${group} back at its size`);
      assert.ok(spot.instances.some((i) => i.id === result.replacementInstanceId), `the replacement is in ${group}`);
      assert.equal((await e2e.client.workflow.getHandle(capacityWorkflowId(group)).describe()).status.name, 'RUNNING');
    }
    assert.deepEqual(await desiredChangesSince(since), ['p1-spot', 'p2-spot'], 'no other group\'s desired capacity was written');
    assert.equal((await e2e.group('p3-spot')).desired, 2);
  });

  it('a fallback in one pair is reverted by that pair\'s monitor only', async function () {
    await e2e.aws.capacityError('p3-spot');
    const since = Date.now();
    const { instanceId } = await notice('p3-spot');
    const result = await e2e.client.workflow.getHandle<typeof rebalanceWorkflow>(rebalanceWorkflowId(instanceId)).result();
    assert.equal(result.replacement, 'on-demand');
    assert.deepEqual((await e2e.group('p3-od')).instances.map((i) => i.id), [result.replacementInstanceId], 'the fallback is in p3\'s own on-demand group');

    await e2e.aws.restore('p3-spot');
    const monitor = e2e.client.workflow.getHandle(monitorWorkflowId('p3-spot', 'p3-od'));
    await until('p3\'s monitor to remove the fallback', async () => (await monitor.query(monitorStatusQuery)).events.some((e) => e.onDemandInstanceId === result.replacementInstanceId && e.state === 'removed'), 150_000);
    assert.equal((await e2e.group('p3-od')).desired, 0);
    for (const pair of PAIRS.slice(0, 2)) {
      const events = (await e2e.client.workflow.getHandle(monitorWorkflowId(pair.spot, pair.onDemand)).query(monitorStatusQuery)).events;
      assert.deepEqual(events, [], `${pair.spot}'s monitor had nothing to do`);
    }
    assert.deepEqual(await desiredChangesSince(since), ['p3-od', 'p3-spot'], 'only p3\'s groups were written');
  });

  it('a node of an untagged group is refused with nothing changed; once the group is tagged, the next discovery protects it', async function () {
    const since = Date.now();
    const { instanceId } = await notice('plain');
    const handle = e2e.client.workflow.getHandle<typeof rebalanceWorkflow>(rebalanceWorkflowId(instanceId));
    const refused = await handle.result().then(() => 'completed', (error: WorkflowFailedError) => String(error.cause?.message));
    assert.match(refused, /rejected, nothing changed: .*"plain", which Spot Guard does not protect/);
    assert.deepEqual(await desiredChangesSince(since), []);
    assert.deepEqual(await e2e.nodeState(EndToEnd.nodeName(instanceId)), { taints: [], cordoned: false });

    await e2e.autoScaling.send(
      new CreateOrUpdateTagsCommand({
        Tags: Object.entries(spotTags('plain-od')).map(([Key, Value]) => ({ Key, Value, ResourceId: 'plain', ResourceType: 'auto-scaling-group', PropagateAtLaunch: false })),
      }),
    );
    await until('the tagged group found', async () => e2e.workerLog().includes('plain → plain-od'), 30_000);
    await requestRebalance(e2e.client, TASK_QUEUE, { instanceId, nodeName: EndToEnd.nodeName(instanceId) });
    const result = await handle.result();
    assert.equal(result.replacement, 'spot');
    assert.equal((await e2e.group('plain')).desired, 1);
  });
});
