// The disruption budget without a server: at most `limit` nodes drain at once except notices (which bypass the queue
// but count), the queue moves in arrival order, leases free forgotten slots; held against random sequences.
import assert from 'node:assert/strict';
import type { DrainSlotRequest } from '../../workflows/capacity/api.js';
import { DrainBudget } from '../../workflows/capacity/drain-budget.js';
import { forSeeds, type Random } from '../helpers/random.js';

const request = (id: string, bypass = false, leaseSeconds = 600): DrainSlotRequest => ({
  requestId: id,
  workflowId: `wf-${id}`,
  instanceId: 'i-0123456789abcdef0',
  nodeName: `node-${id}`,
  budget: { nodes: 2 },
  leaseSeconds,
  bypass,
});

describe('disruption budget (no server)', function () {
  it('grants up to the limit, queues the rest in order, lets the queue move up on release', function () {
    const budget = new DrainBudget();
    assert.deepEqual(budget.answer(request('a'), 10, 0), { requestId: 'a', status: 'granted' });
    assert.deepEqual(budget.answer(request('b'), 10, 0), { requestId: 'b', status: 'granted' });
    assert.deepEqual(budget.answer(request('c'), 10, 0), { requestId: 'c', status: 'queued', position: 1, limit: 2 });
    assert.equal(budget.answer(request('c'), 10, 0), undefined, 'asked again while queued: nothing new to say');
    assert.deepEqual(budget.answer(request('n', true), 10, 0), { requestId: 'n', status: 'granted' }, 'a notice is never held');
    budget.release('a');
    budget.release('n');
    assert.deepEqual(budget.promote(10, 0).map((r) => r.requestId), ['c']);
  });

  it('a release that arrives before its request was answered leaves no slot taken (an interruption notice drains at once)', function () {
    const budget = new DrainBudget();
    budget.incoming.push(request('n', true), request('b'));
    budget.release('n');
    assert.deepEqual(budget.incoming.map((r) => r.requestId), ['b'], 'only the released request is dropped');
    assert.equal(budget.busy(), false);
  });

  it('a slot whose holder never gives it back is freed by its lease', function () {
    const budget = new DrainBudget();
    budget.answer(request('a', false, 60), 10, 0);
    budget.answer(request('b', false, 600), 10, 0);
    budget.answer(request('c'), 10, 0);
    assert.deepEqual(budget.expireLeases(60_000).map((h) => h.requestId), ['a']);
    assert.deepEqual(budget.promote(10, 60_000).map((r) => r.requestId), ['c']);
  });

  it('a percentage budget rounds up and never drops below one node', function () {
    const budget = new DrainBudget({ draining: [], queued: [], budget: { percent: 10 } });
    assert.equal(budget.limit(0), 1);
    assert.equal(budget.limit(11), 2);
  });

  it('random sequences: the budget holds except for notices, the queue keeps arrival order, nobody is both draining and queued', function () {
    forSeeds(300, (random) => runSequence(random));
  });
});

function runSequence(random: Random): void {
  const budget = new DrainBudget();
  const limit = 2;
  const arrival: string[] = [];
  let now = 0;
  for (let step = 0; step < 100; step++) {
    now += random.int(30_000);
    const id = `r${random.int(10)}`;
    const op = random.int(4);
    const drainingBefore = budget.queue.draining.filter((d) => !d.bypass).length;
    if (op === 0) {
      const answer = budget.answer(request(id, random.chance(0.1), 30 + random.int(300)), 10, now);
      if (answer?.status === 'queued' && !arrival.includes(id)) arrival.push(id);
      if (answer?.status === 'granted' && !budget.queue.draining.find((d) => d.requestId === id)?.bypass) {
        assert.ok(drainingBefore <= limit, 'granted within the budget');
      }
    } else if (op === 1) {
      budget.release(id);
    } else {
      budget.expireLeases(now);
      const promoted = budget.promote(10, now).map((r) => r.requestId);
      const expected = arrival.filter((a) => budget.queue.draining.some((d) => d.requestId === a) && promoted.includes(a));
      assert.deepEqual(promoted, expected, 'promoted in arrival order');
    }
    for (let i = arrival.length - 1; i >= 0; i--) if (!budget.queue.queued.some((q) => q.requestId === arrival[i])) arrival.splice(i, 1);
    assert.deepEqual(budget.queue.queued.map((q) => q.requestId), arrival, 'the queue is in arrival order');
    const draining = budget.queue.draining.map((d) => d.requestId);
    assert.equal(new Set(draining).size, draining.length, 'no request holds two slots');
    for (const q of budget.queue.queued) assert.ok(!draining.includes(q.requestId), `${q.requestId} is draining or queued, not both`);
    if (budget.queue.queued.length > 0 && op > 1) assert.ok(budget.queue.draining.length >= limit, 'nobody waits while the budget has room');
  }
}
