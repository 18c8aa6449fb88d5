// The group's disruption budget: at most so many of its nodes drain at once, the rest wait in arrival order. A slot is
// released when the drain ends, or by its lease if its workflow was terminated by hand. Interruption notices and
// drainNow bypass the queue (AWS takes the node in two minutes either way) but count against the budget. Pure:
// unit-tested without a server.
import { describeDrainBudget, drainBudgetLimit } from '../shared/settings.js';
import type { DrainHolder, DrainQueue, DrainSlotAnswer, DrainSlotRequest } from './api.js';

export class DrainBudget {
  readonly queue: DrainQueue;
  /** Requests received since the loop last answered them (answering may need the group's size first). */
  readonly incoming: DrainSlotRequest[] = [];

  constructor(carried?: DrainQueue) {
    this.queue = carried ?? { draining: [], queued: [] };
  }

  /** How many nodes may drain at once in a group of this size (1 until a request has named the budget). */
  limit(groupSize: number): number {
    return this.queue.budget ? drainBudgetLimit(this.queue.budget, groupSize) : 1;
  }

  /**
   * The answer to a request: granted, queued with its position, or none for a request asked again while it waits
   * (each waiting workflow asks again every minute in case this workflow lost its queue: hundreds in a wave, and the
   * answer would tell them nothing new; the live queue is in the status query).
   */
  answer(request: DrainSlotRequest, groupSize: number, now: number): DrainSlotAnswer | undefined {
    const { requestId } = request;
    this.queue.budget = request.budget;
    if (this.queue.draining.some((d) => d.requestId === requestId)) return { requestId, status: 'granted' };
    const queuedAt = this.queue.queued.findIndex((q) => q.requestId === requestId);
    if (queuedAt >= 0 && !request.bypass) return undefined;
    if (queuedAt >= 0) this.queue.queued.splice(queuedAt, 1);
    if (request.bypass || (this.queue.queued.length === 0 && this.queue.draining.length < this.limit(groupSize))) {
      this.grant(request, now);
      return { requestId, status: 'granted' };
    }
    this.queue.queued.push({ ...request, queuedAt: new Date(now).toISOString() });
    return { requestId, status: 'queued', position: this.queue.queued.length, limit: this.limit(groupSize) };
  }

  /** Also a request not answered yet: its drain can end before this workflow took it (an interruption notice drains at once). */
  release(requestId: string): void {
    this.incoming.splice(0, this.incoming.length, ...this.incoming.filter((r) => r.requestId !== requestId));
    this.queue.draining = this.queue.draining.filter((d) => d.requestId !== requestId);
    this.queue.queued = this.queue.queued.filter((q) => q.requestId !== requestId);
  }

  /** Frees the slots whose holders never released them; returns those holders. */
  expireLeases(now: number): DrainHolder[] {
    const expired = this.queue.draining.filter((d) => Date.parse(d.leaseUntil) <= now);
    this.queue.draining = this.queue.draining.filter((d) => Date.parse(d.leaseUntil) > now);
    return expired;
  }

  canPromote(groupSize: number): boolean {
    return this.queue.queued.length > 0 && this.queue.draining.length < this.limit(groupSize);
  }

  /** Lets the queue move up in order while the budget has room; returns the requests granted. */
  promote(groupSize: number, now: number): DrainSlotRequest[] {
    const granted: DrainSlotRequest[] = [];
    while (this.canPromote(groupSize)) {
      const next = this.queue.queued.shift() as DrainSlotRequest;
      this.grant(next, now);
      granted.push(next);
    }
    return granted;
  }

  busy(): boolean {
    return this.queue.draining.length > 0 || this.queue.queued.length > 0;
  }

  leaseEnds(): number[] {
    return this.queue.draining.map((holder) => Date.parse(holder.leaseUntil));
  }

  describe(groupSize: number): { limit: number; budget: string } | undefined {
    return this.queue.budget ? { limit: this.limit(groupSize), budget: describeDrainBudget(this.queue.budget) } : undefined;
  }

  carried(): DrainQueue | undefined {
    return this.busy() ? this.queue : undefined;
  }

  private grant(request: DrainSlotRequest, now: number): void {
    this.queue.draining.push({
      requestId: request.requestId,
      workflowId: request.workflowId,
      instanceId: request.instanceId,
      nodeName: request.nodeName,
      since: new Date(now).toISOString(),
      leaseUntil: new Date(now + request.leaseSeconds * 1000).toISOString(),
      bypass: request.bypass ?? false,
    });
  }
}
