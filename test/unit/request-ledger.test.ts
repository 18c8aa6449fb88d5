// The capacity workflow's request ledger without a server: a repeated request is answered again and never applied
// twice, batches follow the queue's rules, held against random sequences of requests, batches, results and failures.
import assert from 'node:assert/strict';
import type { IncreaseCapacityRequest, RetireInstanceRequest } from '../../workflows/capacity/api.js';
import { type Pending, RequestLedger } from '../../workflows/capacity/request-ledger.js';
import { forSeeds, type Random } from '../helpers/random.js';

const waiter = { workflowId: 'wf', waitSeconds: 60, pollIntervalSeconds: 10 };
const increase = (requestId: string, arrivedAt: number, coalesceSeconds = 0): Pending => ({
  kind: 'increase',
  request: { requestId, coalesceSeconds, waiter } satisfies IncreaseCapacityRequest,
  arrivedAt,
});
const retire = (requestId: string, arrivedAt: number, terminate = true): Pending => ({
  kind: 'retire',
  request: { requestId, instanceId: 'i-0123456789abcdef0', terminate, replyTo: 'wf' } satisfies RetireInstanceRequest,
  arrivedAt,
});

describe('request ledger (no server)', function () {
  it('increases wait for the coalescing window of the first, then go as one batch; a retirement does not wait behind them', function () {
    const ledger = new RequestLedger();
    ledger.take(increase('a', 0, 2));
    ledger.take(increase('b', 500, 2));
    ledger.take(retire('r', 600));
    assert.deepEqual(ledger.takeBatch(1000).map((p) => p.request.requestId), ['r']);
    assert.deepEqual(ledger.takeBatch(1999), []);
    assert.deepEqual(ledger.takeBatch(2000).map((p) => p.request.requestId), ['a', 'b']);
  });

  it('looks waiting together join a look\'s batch, a termination goes alone', function () {
    const ledger = new RequestLedger();
    ledger.take(retire('look-1', 0, false));
    ledger.take(retire('kill', 0, true));
    ledger.take(retire('look-2', 0, false));
    const batch = ledger.takeBatch(0);
    ledger.addWaitingLooks(batch);
    assert.deepEqual(batch.map((p) => p.request.requestId), ['look-1', 'look-2']);
    assert.deepEqual(ledger.queue.map((p) => p.request.requestId), ['kill']);
  });

  it('a drain slot asked for or given back on its own is dropped from the increase that carries it, queued or being applied', function () {
    const ledger = new RequestLedger();
    const withSlot = (requestId: string, arrivedAt: number, slot: string): Pending => ({
      kind: 'increase',
      request: { requestId, waiter: { ...waiter, drainSlot: { requestId: slot, workflowId: 'wf', instanceId: 'i-0123456789abcdef0', nodeName: 'n', budget: { nodes: 1 }, leaseSeconds: 60 } } },
      arrivedAt,
    });
    ledger.take(withSlot('applying', 0, 'slot-a'));
    const batch = ledger.takeBatch(0);
    ledger.take(withSlot('queued', 1, 'slot-q'));
    ledger.take(withSlot('other', 1, 'slot-o'));
    ledger.dropDrainSlot('slot-a');
    ledger.dropDrainSlot('slot-q');
    const slotOf = (p: Pending | undefined): string | undefined => (p?.kind === 'increase' ? p.request.waiter.drainSlot?.requestId : 'not an increase');
    assert.equal(slotOf(batch[0]), undefined, 'the batch being applied holds the same request');
    assert.deepEqual(ledger.queue.map(slotOf), [undefined, 'slot-o']);
  });

  it('a request id used for another kind is refused, naming it', function () {
    const ledger = new RequestLedger();
    ledger.record('x', 'increase', { status: 'at-max-size', desired: 1, maxSize: 1 }, 'now');
    assert.match(ledger.refusalOf(retire('x', 0)) ?? '', /requestId "x" was already used for a increase request/);
  });

  it('a failed request is answered with its failure\'s type, when it had one (BelowMinSize, say)', function () {
    const ledger = new RequestLedger();
    ledger.take(retire('typed', 0));
    const typed = ledger.takeBatch(0);
    ledger.finish(typed, 'below its MinSize (2)', 'BelowMinSize');
    ledger.take(retire('plain', 0));
    const plain = ledger.takeBatch(0);
    ledger.finish(plain, 'AWS said no');
    assert.deepEqual(ledger.answersFor([...typed, ...plain]).map((a) => a.answer), [
      { requestId: 'typed', status: 'failed', message: 'below its MinSize (2)', type: 'BelowMinSize' },
      { requestId: 'plain', status: 'failed', message: 'AWS said no' },
    ]);
  });

  it('random sequences: applied at most once unless it failed, answered with its first result, never queued twice', function () {
    forSeeds(300, (random) => runSequence(random));
  });
});

function runSequence(random: Random): void {
  const ledger = new RequestLedger();
  const applied = new Map<string, number>();
  const firstResult = new Map<string, string>();
  const failedOnce = new Set<string>();
  let now = 0;
  for (let step = 0; step < 80; step++) {
    now += random.int(1500);
    if (random.chance(0.55)) {
      const id = `r${random.int(12)}`;
      const earlier = ledger.completed[id]?.kind;
      const kind = earlier ?? (Number(id.slice(1)) % 3 === 0 ? 'retire' : 'increase');
      ledger.take(kind === 'increase' ? increase(id, now, random.int(3)) : retire(id, now, random.chance(0.5)));
    } else {
      const batch = ledger.takeBatch(now);
      ledger.addWaitingLooks(batch);
      const fail = random.chance(0.2);
      for (const { request, kind } of batch) {
        applied.set(request.requestId, (applied.get(request.requestId) ?? 0) + 1);
        if (fail) failedOnce.add(request.requestId);
        else ledger.record(request.requestId, kind, { status: 'still-running' }, `t${now}`);
      }
      ledger.finish(batch, fail ? 'AWS said no' : undefined);
      for (const { answer } of ledger.answersFor(batch)) {
        if (answer.status === 'failed') continue;
        const shown = JSON.stringify({ ...answer, requestId: undefined });
        assert.equal(firstResult.get(answer.requestId) ?? shown, shown, `${answer.requestId} answered with its first result`);
        firstResult.set(answer.requestId, shown);
      }
      ledger.toAnswerAgain.splice(0);
    }
    const queued = ledger.queue.map((p) => p.request.requestId);
    assert.equal(new Set(queued).size, queued.length, 'no request queued twice');
    for (const id of queued) assert.ok(!ledger.completed[id], `${id} is answered, not queued again`);
    for (const [id, times] of applied) assert.ok(times === 1 || failedOnce.has(id), `${id} applied ${times} times without a failure`);
  }
}
