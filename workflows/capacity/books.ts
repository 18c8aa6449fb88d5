// The group's books per instance: "desired was raised by one for warned instance W" stays open as long as W is in the
// group, whatever became of the rebalance run that asked (ended kept, failed, terminated by hand), and is settled
// exactly once when W leaves: by Spot Guard's own terminate with decrement, or, when W left another way, by working
// out from two looks at the group why it left. Never a bare "desired - 1" that lets the group pick a running victim.
// Pure: unit-tested without a server.
import type { DepartureCause, GroupSnapshot } from '../shared/activity-types.js';
import { isTerminatingState } from '../shared/ids.js';
import type { Book, BooksView } from './api.js';

/** How the departure of a booked instance is settled. */
export type Settlement =
  /** The group's desired came down with it (an operator's or another tool's terminate with decrement): nothing to do. */
  | { instanceId: string; how: 'removed-by-someone-else' }
  /** It left without a decrement and the group has not launched its replacement yet: lower desired, no instance goes. */
  | { instanceId: string; how: 'lower-desired'; desiredAfter: number }
  /**
   * It left without a decrement and the group launched a replacement: that replacement goes, with decrement (at once
   * while it has no Kubernetes node, else drained first: see departures.ts).
   */
  | { instanceId: string; how: 'terminate-replacement'; replacementId: string }
  /**
   * The two looks cannot tell (others changed desired meanwhile): desired is left alone, and a warning says so.
   * `askCauses`: the instances whose termination causes would tell (departures() again, with them).
   */
  | { instanceId: string; how: 'unclear'; reason: string; askCauses?: string[] };

export const liveInstances = (group: Pick<GroupSnapshot, 'instances'>): string[] =>
  group.instances.filter((i) => !isTerminatingState(i.lifecycleState)).map((i) => i.instanceId);

/** The instances the group's desired capacity counts: InService and launching (not leaving, not in Standby). */
export const countedInstances = (group: Pick<GroupSnapshot, 'instances'>): string[] =>
  group.instances.filter((i) => i.lifecycleState === 'InService' || i.lifecycleState.startsWith('Pending')).map((i) => i.instanceId);

export class GroupBooks {
  readonly open: Record<string, Book>;
  /** The group as Spot Guard last knew it, kept exact across its own changes: what a departure is measured against. */
  view: BooksView | undefined;

  constructor(carried?: { books?: Record<string, Book>; booksView?: BooksView }) {
    this.open = { ...(carried?.books ?? {}) };
    this.view = carried?.booksView ? { desired: carried.booksView.desired, live: [...carried.booksView.live] } : undefined;
  }

  get count(): number {
    return Object.keys(this.open).length;
  }

  /** Desired was raised for `instanceId` (a live member of the group) by the request `requestId`. */
  raisedFor(instanceId: string, requestId: string, at: string): void {
    this.open[instanceId] ??= { instanceId, requestId, raisedAt: at };
  }

  close(instanceId: string): void {
    delete this.open[instanceId];
  }

  /**
   * The book of `from`, which left without a decrement, now stands for `to`, the instance its group launched in its
   * place: desired stays raised by one, for `to`, until `to` leaves.
   */
  moveTo(from: string, to: string): void {
    const book = this.open[from];
    if (!book) return;
    this.open[to] = { instanceId: to, requestId: book.requestId, raisedAt: book.raisedAt, carriedFor: book.carriedFor ?? from };
    this.close(from);
  }

  /** Request ids of open books: their answers are remembered as long as the book is open. */
  requestIds(): Set<string> {
    return new Set(Object.values(this.open).map((b) => b.requestId));
  }

  // Spot Guard's own changes, so that the next look does not take them for someone else's.
  ownDesired(desired: number): void {
    if (this.view) this.view.desired = desired;
  }

  ownTermination(instanceId: string, decrement: boolean): void {
    if (!this.view) return;
    this.view.live = this.view.live.filter((id) => id !== instanceId);
    if (decrement) this.view.desired--;
  }

  /** A new instance given to a waiter is nobody's replacement for a departed one. */
  ownArrival(instanceId: string): void {
    if (this.view && !this.view.live.includes(instanceId)) this.view.live.push(instanceId);
  }

  /**
   * A fresh look at the group: how each booked instance that left since the view is settled. The view is not moved.
   * `causes`: how the instances that left went, from their scaling activities, when the looks alone could not tell.
   */
  departures(group: GroupSnapshot, takenByWaiters: ReadonlySet<string>, causes?: Readonly<Record<string, DepartureCause>>): Settlement[] {
    const live = liveInstances(group);
    const liveNow = new Set(live);
    const gone = Object.keys(this.open).filter((id) => !liveNow.has(id));
    if (gone.length === 0) return [];
    const view = this.view ?? { desired: group.desiredCapacity, live: [...live, ...gone] };
    const departedAll = new Set([...view.live, ...gone].filter((id) => !liveNow.has(id)));
    const decrements = view.desired - group.desiredCapacity;
    if (decrements > 0 && decrements >= departedAll.size) return gone.map((instanceId) => ({ instanceId, how: 'removed-by-someone-else' }));
    if (decrements > 0 && departedAll.size === gone.length) {
      // Every instance that left was booked, and each book owes the same one decrement: which of them came with the
      // decrements does not matter, only how many did.
      const settledElsewhere = gone.slice(0, decrements).map((instanceId): Settlement => ({ instanceId, how: 'removed-by-someone-else' }));
      return [...settledElsewhere, ...this.replacementsOwed(group, gone.slice(decrements), view, takenByWaiters)];
    }
    if (decrements > 0 && causes) {
      const told = this.byCauses(group, gone, [...departedAll], decrements, view, takenByWaiters, causes);
      if (told) return told;
    }
    if (decrements !== 0) {
      const reason = `desired went from ${view.desired} to ${group.desiredCapacity} while ${departedAll.size} instance(s) left: cannot tell whether ${gone.join(', ')} went with a decrement`;
      const askCauses = decrements > 0 && !causes ? [...departedAll] : undefined;
      return gone.map((instanceId) => ({ instanceId, how: 'unclear', reason, ...(askCauses ? { askCauses } : {}) }));
    }
    return this.replacementsOwed(group, gone, view, takenByWaiters);
  }

  /**
   * Each departure's own cause settles it, provided every instance that left has one and they account for exactly the
   * decrements seen (else someone also changed desired by hand, and the looks stay unclear).
   */
  private byCauses(
    group: GroupSnapshot,
    gone: string[],
    departedAll: string[],
    decrements: number,
    view: BooksView,
    takenByWaiters: ReadonlySet<string>,
    causes: Readonly<Record<string, DepartureCause>>,
  ): Settlement[] | undefined {
    if (!departedAll.every((id) => causes[id] !== undefined)) return undefined;
    if (departedAll.filter((id) => causes[id] === 'with-decrement').length !== decrements) return undefined;
    const withDecrement = gone.filter((id) => causes[id] === 'with-decrement');
    const settledElsewhere = withDecrement.map((instanceId): Settlement => ({ instanceId, how: 'removed-by-someone-else' }));
    // The group's desired already counts the others' decrements: what is owed is measured against it.
    return [...settledElsewhere, ...this.replacementsOwed(group, gone.filter((id) => causes[id] === 'without-decrement'), view, takenByWaiters)];
  }

  /** No decrement came with them: the group owes each a replacement Spot Guard does not want. */
  private replacementsOwed(group: GroupSnapshot, gone: string[], view: BooksView, takenByWaiters: ReadonlySet<string>): Settlement[] {
    const known = new Set(view.live);
    const launchingFirst = (a: { lifecycleState: string }): number => (a.lifecycleState === 'InService' ? 1 : 0);
    const newcomers = group.instances
      .filter((i) => !isTerminatingState(i.lifecycleState) && !known.has(i.instanceId) && !takenByWaiters.has(i.instanceId))
      .sort((a, b) => launchingFirst(a) - launchingFirst(b))
      .map((i) => i.instanceId);
    let desired = group.desiredCapacity;
    const liveCount = liveInstances(group).length;
    return gone.map((instanceId): Settlement => {
      if (liveCount < desired) {
        desired--;
        return { instanceId, how: 'lower-desired', desiredAfter: desired };
      }
      const replacementId = newcomers.shift();
      if (replacementId) return { instanceId, how: 'terminate-replacement', replacementId };
      return { instanceId, how: 'unclear', reason: `the group is at its desired ${desired} with no new instance to tell apart as ${instanceId}'s replacement` };
    });
  }

  /** The look is settled: it becomes the view. */
  see(group: GroupSnapshot): void {
    this.view = { desired: group.desiredCapacity, live: liveInstances(group) };
  }

  carried(): { books?: Record<string, Book>; booksView?: BooksView } {
    return { ...(this.count > 0 ? { books: { ...this.open } } : {}), ...(this.view ? { booksView: this.view } : {}) };
  }
}
