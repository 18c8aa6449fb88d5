// What the Temporal UI shows, without a server: the activity proxies' wrapper hands each call its summary, a malformed
// input costs the summary and never the call, and the current details carry the facts an operator looks for.
import assert from 'node:assert/strict';
import { capacityDetails } from '../../workflows/capacity/details.js';
import type { CapacityStatus } from '../../workflows/capacity/api.js';
import { monitorDetails, type MonitorShown } from '../../workflows/monitor/details.js';
import type { RebalanceStatus } from '../../workflows/rebalance/api.js';
import { rebalanceDetails } from '../../workflows/rebalance/details.js';
import { withSummaries } from '../../workflows/shared/user-metadata.js';
import { defaultFlowSettings } from '../helpers/harness.js';

/** A stand-in for an activity proxy: records the options and arguments of each call. */
function fakeProxy(calls: { options: object; args: unknown[] }[]) {
  const activity = Object.assign(async () => 'called without options', {
    executeWithOptions: async (options: object, args: unknown[]) => {
      calls.push({ options, args });
      return 'done';
    },
  });
  return { cordonNode: activity, evictPods: activity, notAnActivity: 42 };
}

const settings = defaultFlowSettings('spot-asg', 'od-asg');
const rebalanceStatus = (overrides: Partial<RebalanceStatus>): RebalanceStatus => ({
  instanceId: 'i-0123456789abcdef0',
  nodeName: 'ip-10-0-1-2',
  phase: 'draining',
  capacityPhase: 'done',
  startedAt: '2026-12-03T04:00:00Z',
  phaseChangedAt: '2026-12-03T04:00:00Z',
  spot: { asgName: 'spot-asg' },
  notes: [],
  ...overrides,
});

describe('what the Temporal UI shows (no server)', function () {
  it('every proxied call carries its summary; a malformed input loses the summary, not the call', async function () {
    const calls: { options: object; args: unknown[] }[] = [];
    const proxy = withSummaries(fakeProxy(calls));
    assert.equal(await proxy.cordonNode(), 'done');
    const { evictPods } = proxy; // destructured, as the workflows do
    await evictPods();
    assert.equal(proxy.notAnActivity, 42);
    // cordonNode() without input: its summarizer throws reading it, the call goes on without a summary.
    assert.deepEqual(calls[0], { options: {}, args: [] });
    const real = withSummaries(fakeProxy(calls)) as unknown as { cordonNode(input: { nodeName: string }): Promise<string> };
    await real.cordonNode({ nodeName: 'ip-10-0-1-2' });
    assert.match((calls[2]?.options as { summary?: string }).summary ?? '', /cordon.*ip-10-0-1-2/);
  });

  it('a rebalance says where it is: the drain slot queue position, the drain, what an incomplete drain left', function () {
    const queued = rebalanceDetails(rebalanceStatus({ phase: 'awaiting-drain-slot', drainSlot: { state: 'queued', position: 3, at: '' } }), settings);
    assert.match(queued, /drain slot.*spot-asg.*position 3/);
    assert.match(rebalanceDetails(rebalanceStatus({ phase: 'draining' }), settings), new RegExp(`draining node ip-10-0-1-2.*${settings.drainTimeoutSeconds} s`));
    const drain = { evicted: [], skipped: [], left: ['ops/debug (no controller)'], remaining: ['web/a', 'web/b'], complete: false, finishedAt: '' };
    const reclaim = rebalanceDetails(rebalanceStatus({ phase: 'awaiting-reclaim', drain }), settings);
    assert.match(reclaim, /reclaim i-0123456789abcdef0/);
    assert.match(reclaim, /\b2 pod.*PodDisruptionBudget.*\b1\b/);
  });

  it('a notice drains at once while the capacity steps go on: both are shown, and the notice', function () {
    const status = rebalanceStatus({
      phase: 'draining',
      capacityPhase: 'waiting-for-on-demand',
      spot: { asgName: 'spot-asg', failure: 'capacity problem: no m5.large' },
      onDemand: { asgName: 'od-asg', desiredBefore: 0, desiredTarget: 1 },
      interruption: { action: 'terminate', time: '2026-12-03T04:02:00Z', receivedAt: '' },
    });
    const [first, meanwhile, notice] = rebalanceDetails(status, settings).split('\n');
    assert.match(first ?? '', /^draining/);
    assert.match(meanwhile ?? '', /on-demand.*no m5\.large.*od-asg.*0 → 1/);
    assert.match(notice ?? '', /terminate.*04:02/);
  });

  it('a capacity workflow of a wave names a few instances and counts the rest', function () {
    const books = Array.from({ length: 40 }, (_, i) => ({ instanceId: `i-${String(i).padStart(17, '0')}`, requestId: `r${i}`, raisedAt: '' }));
    const status: CapacityStatus = {
      asgName: 'spot-asg',
      pendingRequests: [],
      appliedChanges: 1,
      recent: [],
      waiting: { count: 12, polls: 3, assigned: 4, launching: 8, late: 0 },
      draining: [],
      drainQueue: [],
      books,
    };
    const details = capacityDetails(status);
    assert.match(details, /^capacity of spot-asg/);
    assert.match(details, /\b12\b.*waiting.*\b3\b poll/);
    assert.ok(details.includes(books[4].instanceId) && !details.includes(books[5].instanceId), details);
    assert.match(details, /\b35 more/);
  });

  it('the monitor names its pair and says why it waits', function () {
    const shown: MonitorShown = {
      spotAsgName: 'spot-asg',
      onDemandAsgName: 'od-asg',
      state: { events: [], paused: false, scaleDowns: 0, notes: [], lastCheck: { at: '', healthy: false, reasons: ['2 of 3 desired instances InService'] } },
      phase: 'waiting-for-health',
      now: 0,
    };
    assert.match(monitorDetails(shown), /spot-asg ↔ od-asg.*2 of 3 desired instances InService/);
    const inFlight = { instanceId: 'i-0aaaaaaaaaaaaaaaa', nodeName: 'od-1', launchedBySpotGuard: true, step: 'awaiting-pods' as const, startedAt: '', attempts: 1, owners: [] };
    assert.match(monitorDetails({ ...shown, phase: 'scaling-down', state: { ...shown.state, inFlight } }), /i-0aaaaaaaaaaaaaaaa.*od-1.*awaiting-pods/);
  });
});
