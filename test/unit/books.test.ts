// The books per instance without a server: a warned instance that leaves the group is settled exactly once, by the
// rule that tells an operator's decrement from an AWS reclaim, and never by letting the group pick a running victim.
// Examples first, then random sequences of raises, reclaims, operator terminations, late launches and looks.
import assert from 'node:assert/strict';
import type { GroupSnapshot } from '../../workflows/shared/activity-types.js';
import { GroupBooks, type Settlement } from '../../workflows/capacity/books.js';
import { forSeeds, type Random } from '../helpers/random.js';

const snapshot = (desired: number, instances: [string, string][]): GroupSnapshot => ({
  asgName: 'spot',
  desiredCapacity: desired,
  minSize: 0,
  maxSize: 100,
  capacityRebalance: false,
  instances: instances.map(([instanceId, lifecycleState]) => ({ instanceId, lifecycleState, healthStatus: 'Healthy' })),
});
const inService = (...ids: string[]): [string, string][] => ids.map((id) => [id, 'InService']);

describe('books per instance (no server)', function () {
  /** The group after Spot Guard raised it by one for `w` (3 → 4) and the replacement r came. */
  function raisedForW(): GroupBooks {
    const books = new GroupBooks();
    books.see(snapshot(3, inService('w', 'a', 'b')));
    books.raisedFor('w', 'rebalance-w/spot', '2026-12-02T00:00:00Z');
    books.ownDesired(4);
    books.ownArrival('r');
    return books;
  }

  it('gone with a decrement made by someone else (an operator): nothing more to do', function () {
    const departures = raisedForW().departures(snapshot(3, inService('a', 'b', 'r')), new Set());
    assert.deepEqual(departures, [{ instanceId: 'w', how: 'removed-by-someone-else' }]);
  });

  it('reclaimed by AWS before the group launched anew: desired comes down, no instance goes', function () {
    const departures = raisedForW().departures(snapshot(4, inService('a', 'b', 'r')), new Set());
    assert.deepEqual(departures, [{ instanceId: 'w', how: 'lower-desired', desiredAfter: 3 }]);
  });

  it('reclaimed by AWS and the group already launched its replacement: that replacement goes, not a running node', function () {
    const departures = raisedForW().departures(snapshot(4, [...inService('a', 'b', 'r'), ['x', 'Pending']]), new Set());
    assert.deepEqual(departures, [{ instanceId: 'w', how: 'terminate-replacement', replacementId: 'x' }]);
  });

  it('a book moved to the group\'s own replacement (drained as a surplus) stands for it, and settles when it leaves', function () {
    const books = raisedForW();
    const group = snapshot(4, inService('a', 'b', 'r', 'x'));
    assert.deepEqual(books.departures(group, new Set()), [{ instanceId: 'w', how: 'terminate-replacement', replacementId: 'x' }]);
    books.moveTo('w', 'x');
    books.see(group);
    assert.deepEqual(Object.values(books.open), [{ instanceId: 'x', requestId: 'rebalance-w/spot', raisedAt: '2026-12-02T00:00:00Z', carriedFor: 'w' }]);
    assert.deepEqual([...books.requestIds()], ['rebalance-w/spot'], 'the increase\'s answers are kept while the moved book is open');
    assert.deepEqual(books.departures(group, new Set()), [], 'x is live: nothing to settle');
    // AWS takes x too, and the group has not launched anew: desired comes down for it, as for w.
    assert.deepEqual(books.departures(snapshot(4, inService('a', 'b', 'r')), new Set()), [{ instanceId: 'x', how: 'lower-desired', desiredAfter: 3 }]);
  });

  it('others changed desired meanwhile: unclear, desired left alone', function () {
    const departures = raisedForW().departures(snapshot(6, inService('a', 'b', 'r', 'x', 'y')), new Set());
    assert.equal(departures[0]?.how, 'unclear');
  });

  it('two booked instances left, one with a decrement: only how many came with one matters, so the other book is settled', function () {
    const books = raisedForW();
    books.raisedFor('a', 'rebalance-a/spot', '2026-12-02T00:00:00Z');
    books.ownDesired(5);
    books.ownArrival('s');
    // An operator took w with decrement (5 → 4), AWS reclaimed a; the group has not launched anew.
    const departures = books.departures(snapshot(4, inService('b', 'r', 's')), new Set());
    assert.deepEqual(departures, [
      { instanceId: 'w', how: 'removed-by-someone-else' },
      { instanceId: 'a', how: 'lower-desired', desiredAfter: 3 },
    ]);
  });

  it('a booked and an unbooked instance left, one with a decrement: the looks cannot tell which, their scaling activities can', function () {
    const look = snapshot(3, inService('b', 'r'));
    const departures = raisedForW().departures(look, new Set());
    assert.deepEqual(departures.map((d) => [d.how, d.how === 'unclear' ? d.askCauses : undefined]), [['unclear', ['w', 'a']]], 'asks for the causes of both');
    // AWS reclaimed w, an operator took a with decrement: w still owes its decrement.
    assert.deepEqual(raisedForW().departures(look, new Set(), { w: 'without-decrement', a: 'with-decrement' }), [{ instanceId: 'w', how: 'lower-desired', desiredAfter: 2 }]);
    // The operator took w with decrement, AWS reclaimed a: w's book is settled.
    assert.deepEqual(raisedForW().departures(look, new Set(), { w: 'with-decrement', a: 'without-decrement' }), [{ instanceId: 'w', how: 'removed-by-someone-else' }]);
    // Causes that do not account for the decrements seen (someone also set desired by hand): still unclear, asked no more.
    const inconsistent = raisedForW().departures(look, new Set(), { w: 'without-decrement', a: 'without-decrement' });
    assert.deepEqual(inconsistent.map((d) => [d.how, d.how === 'unclear' ? d.askCauses : undefined]), [['unclear', undefined]]);
  });

  it('a Terminating instance has left; an instance still running has not', function () {
    const books = raisedForW();
    assert.deepEqual(books.departures(snapshot(4, inService('w', 'a', 'b', 'r')), new Set()), []);
    assert.deepEqual(books.departures(snapshot(4, [['w', 'Terminating'], ...inService('a', 'b', 'r')]), new Set()), [
      { instanceId: 'w', how: 'lower-desired', desiredAfter: 3 },
    ]);
  });

  it('an instance given to a waiter is never taken for a departed instance\'s replacement', function () {
    const departures = raisedForW().departures(snapshot(4, inService('a', 'b', 'r', 'z')), new Set(['z']));
    assert.equal(departures[0]?.how, 'unclear');
  });

  it('random sequences: desired ends at its start plus the open books, and no instance goes that was running before', function () {
    let clear = 0;
    forSeeds(300, (random) => {
      if (runSequence(random)) clear++;
    });
    // The property must bite: at least half the sequences (many events between two looks) tell every departure apart.
    assert.ok(clear >= 150, `only ${clear} of 300 sequences were clear`);
  });
});

/** A model of one Auto Scaling group, Spot Guard's books over it, and what others do to it. */
class ModelGroup {
  desired: number;
  live: { id: string; state: 'Pending' | 'InService' }[] = [];
  private next = 0;
  /** Desired Spot Guard is accountable for: the start, its open raises, minus others' decrements. */
  expected: number;
  unclear = false;

  constructor(size: number) {
    this.desired = size;
    this.expected = size;
    for (let i = 0; i < size; i++) this.live.push({ id: this.newId(), state: 'InService' });
  }

  newId(): string {
    return `i-${(this.next++).toString(16).padStart(17, '0')}`;
  }

  /** What the group does on its own: launch up to desired (never down: Spot Guard's changes never leave it above). */
  reconcile(): void {
    assert.ok(this.live.length <= this.desired, `the group is above desired (${this.live.length} > ${this.desired}) and would pick a victim`);
    while (this.live.length < this.desired) this.live.push({ id: this.newId(), state: 'Pending' });
  }

  snapshot(): GroupSnapshot {
    return snapshot(this.desired, this.live.map((i) => [i.id, i.state]));
  }

  remove(id: string): void {
    this.live = this.live.filter((i) => i.id !== id);
  }
}

function runSequence(random: Random): boolean {
  const group = new ModelGroup(3 + random.int(5));
  const books = new GroupBooks();
  books.see(group.snapshot());
  const runningAtLook = new Set(group.live.filter((i) => i.state === 'InService').map((i) => i.id));
  const steps: string[] = [];
  for (let step = 0; step < 30; step++) {
    const action = random.pick(['raise', 'reclaim', 'operator', 'launch', 'look', 'look'] as const);
    steps.push(action);
    const candidates = group.live.filter((i) => i.state === 'InService');
    if (action === 'raise' && candidates.length > 0) {
      const warned = random.pick(candidates).id;
      if (books.open[warned]) continue;
      group.desired++;
      group.expected++;
      books.ownDesired(group.desired);
      books.raisedFor(warned, `rebalance-${warned}/spot`, 'now');
    } else if (action === 'reclaim' && candidates.length > 0) {
      group.remove(random.pick(candidates).id); // AWS: no decrement; the group will launch anew
    } else if (action === 'operator' && candidates.length > 0) {
      const victim = random.pick(candidates).id;
      group.remove(victim);
      group.desired--;
      group.expected--; // for a booked instance, the operator's decrement is the one its book owed

    } else if (action === 'launch') {
      group.reconcile();
      for (const instance of group.live) if (random.chance(0.5)) instance.state = 'InService';
    } else if (action === 'look') {
      look(group, books, runningAtLook, steps);
      for (const instance of group.live) if (instance.state === 'InService') runningAtLook.add(instance.id);
    }
  }
  look(group, books, runningAtLook, steps);
  if (!group.unclear) assert.equal(group.desired, group.expected, `desired ${group.desired}, expected ${group.expected} after ${steps.join(' ')}`);
  else assert.ok(group.desired >= group.expected, `desired ${group.desired} went below ${group.expected} after ${steps.join(' ')}`);
  return !group.unclear;
}

/** A full look: departures settled as the capacity workflow does, then the look becomes the view. */
function look(group: ModelGroup, books: GroupBooks, runningAtLook: Set<string>, steps: string[]): void {
  for (const settlement of books.departures(group.snapshot(), new Set())) {
    apply(group, settlement, runningAtLook, steps);
    books.close(settlement.instanceId);
  }
  books.see(group.snapshot());
}

function apply(group: ModelGroup, settlement: Settlement, runningAtLook: Set<string>, steps: string[]): void {
  switch (settlement.how) {
    case 'removed-by-someone-else':
      break;
    case 'lower-desired':
      group.desired = settlement.desiredAfter;
      group.expected--;
      break;
    case 'terminate-replacement':
      assert.ok(!runningAtLook.has(settlement.replacementId), `terminated ${settlement.replacementId}, running before the look, after ${steps.join(' ')}`);
      group.remove(settlement.replacementId);
      group.desired--;
      group.expected--;
      break;
    case 'unclear':
      group.unclear = true;
      break;
  }
}
