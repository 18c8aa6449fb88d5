// Everything one capacity workflow knows about its group, in one place the steps share: the request ledger, the
// replacement waiters, the disruption budget, the answer outbox and the group as last seen.
import { log } from '@temporalio/workflow';
import type { GroupSnapshot } from '../shared/activity-types.js';
import { describeGroup } from './activities.js';
import type { CapacityCarriedState, CapacityStatus, CapacityWorkflowInput } from './api.js';
import { AnswerOutbox } from './answer-outbox.js';
import { countedInstances, GroupBooks } from './books.js';
import { BOOKS_LOOK_MS, settleDepartures } from './departures.js';
import { DrainBudget } from './drain-budget.js';
import { sendReplacementAnswers } from './group-poll.js';
import { ReplacementWaiters } from './replacement-waiters.js';
import { RequestLedger } from './request-ledger.js';

export class GroupState {
  readonly asgName: string;
  readonly ledger: RequestLedger;
  readonly waiters: ReplacementWaiters;
  readonly drains: DrainBudget;
  readonly outbox: AnswerOutbox;
  readonly books: GroupBooks;
  appliedChanges: number;
  /** When the group was last looked at in full (departures of booked instances are settled at each full look). */
  private lastFullLookAt: number;
  lastGroup: GroupSnapshot | undefined;
  private warnedAboutCapacityRebalance = false;

  constructor(input: CapacityWorkflowInput) {
    this.asgName = input.asgName;
    this.ledger = new RequestLedger(input.carried);
    this.waiters = new ReplacementWaiters(input.carried?.waits, Date.now());
    this.drains = new DrainBudget(input.carried?.drains);
    this.outbox = new AnswerOutbox(input.asgName);
    this.books = new GroupBooks(input.carried);
    this.lastFullLookAt = Date.now();
    this.appliedChanges = input.carried?.appliedChanges ?? 0;
  }

  /** The group's size for the disruption budget: the latest poll's desired capacity, else the latest look's. */
  groupSize(): number {
    return this.waiters.desiredAtLastPoll ?? this.lastGroup?.desiredCapacity ?? 0;
  }

  groupSizeKnown(): boolean {
    return this.waiters.desiredAtLastPoll !== undefined || this.lastGroup !== undefined;
  }

  /**
   * One full look at the group (sizes and instances), which first settles the books of warned instances that left it;
   * warns once if AWS's Capacity Rebalancing is on.
   */
  async lookAtGroup(): Promise<GroupSnapshot> {
    this.lastFullLookAt = Date.now();
    const group = await describeGroup({ asgName: this.asgName });
    await settleDepartures(this, group);
    this.lastGroup = group;
    await sendReplacementAnswers(this, this.waiters.withdrawUnbacked({ desiredCapacity: group.desiredCapacity, counted: countedInstances(group) }, Date.now()));
    if (group.capacityRebalance && !this.warnedAboutCapacityRebalance) {
      this.warnedAboutCapacityRebalance = true;
      log.warn('Capacity Rebalancing is enabled on this group: AWS launches its own replacement as well as Spot Guard', { asgName: this.asgName });
    }
    return group;
  }

  /** While books are open and nobody waits (waiters' polls do not see departures), a look once a minute. */
  booksLookAt(): number | undefined {
    return this.books.count > 0 && this.waiters.count === 0 ? this.lastFullLookAt + BOOKS_LOOK_MS : undefined;
  }

  status(): CapacityStatus {
    const { waits } = this.waiters;
    return {
      asgName: this.asgName,
      pendingRequests: this.ledger.queue.map((p) => p.request.requestId),
      lastDesired: this.lastGroup?.desiredCapacity,
      lastMaxSize: this.lastGroup?.maxSize,
      appliedChanges: this.appliedChanges,
      recent: Object.values(this.ledger.completed).slice(-20),
      waiting: {
        count: waits.waiters.length,
        oldestSince: waits.waiters[0]?.since,
        polls: waits.polls,
        assigned: waits.assigned.length,
        launching: this.waiters.launchingForWaiters ?? 0,
        late: this.waiters.lateCount,
      },
      drainBudget: this.drains.describe(this.groupSize()),
      draining: this.drains.queue.draining,
      drainQueue: this.drains.queue.queued.map((q) => ({ instanceId: q.instanceId, nodeName: q.nodeName, queuedAt: q.queuedAt })),
      books: Object.values(this.books.open),
    };
  }

  carried(): CapacityCarriedState {
    const waits = this.waiters.carried();
    const drains = this.drains.carried();
    return { ...this.ledger.carried(this.books.requestIds()), ...this.books.carried(), appliedChanges: this.appliedChanges, ...(waits ? { waits } : {}), ...(drains ? { drains } : {}) };
  }
}
