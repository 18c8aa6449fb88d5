// The capacity workflow's books of requests: which are queued, which are being applied, what each was answered, and
// which instances' books were settled. A repeated request (a retried activity, a signal sent again) gets its first
// answer again and never changes the group twice, across continue-as-new too. Pure: unit-tested without a server.
import type {
  CapacityAnswer,
  CapacityCarriedState,
  CapacityRecord,
  IncreaseCapacityRequest,
  ReplacementAnswer,
  RetiredInstance,
  RetireInstanceRequest,
  RetirementAnswer,
  WorkflowAnswer,
} from './api.js';
import { capacityAnswerSignal, replacementAnswerSignal, retirementAnswerSignal } from './api.js';

export type Pending =
  | { kind: 'increase'; request: IncreaseCapacityRequest; arrivedAt: number }
  | { kind: 'retire'; request: RetireInstanceRequest; arrivedAt: number };

/** Completed requests remembered for deduplication, carried across continue-as-new. */
const MAX_REMEMBERED_REQUESTS = 500;
/** Size bound of each carried record set (JSON characters): the input of continue-as-new stays far below the limit. */
const MAX_CARRIED_BYTES = 256 * 1024;

export class RequestLedger {
  readonly completed: Record<string, CapacityRecord>;
  /** Instances whose books were settled, by instance id: never decremented twice, whatever the request id. */
  readonly retired: Record<string, RetiredInstance>;
  readonly queue: Pending[] = [];
  /** Requests answered before and received again (the sender did not see its acknowledgement): answered again. */
  readonly toAnswerAgain: Pending[] = [];
  private readonly failed: Record<string, { message: string; type?: string }> = {};
  /** Dry run's pretend answers: answered once, never remembered (a real run later must not take them for changes made). */
  private readonly pretended: Record<string, CapacityRecord> = {};
  /** Requests of the batch being applied: a copy arriving meanwhile gets the batch's answer, not a batch of its own. */
  private readonly applying = new Map<string, Pending>();

  constructor(carried?: Partial<Pick<CapacityCarriedState, 'completed' | 'retired'>>) {
    this.completed = { ...(carried?.completed ?? {}) };
    this.retired = { ...(carried?.retired ?? {}) };
  }

  /** Why this request cannot be taken (its id was used for another kind of request), or undefined. */
  refusalOf(pending: Pending): string | undefined {
    const earlier = this.completed[pending.request.requestId];
    if (earlier && earlier.kind !== pending.kind) return `requestId "${pending.request.requestId}" was already used for a ${earlier.kind} request`;
    return undefined;
  }

  /** A request as it arrives: answered again if it was answered before, else queued unless already queued or applying. */
  take(pending: Pending): void {
    const id = pending.request.requestId;
    if (this.completed[id]) {
      this.toAnswerAgain.push(pending);
      return;
    }
    if (this.queue.some((p) => p.request.requestId === id) || this.applying.has(id)) return;
    delete this.failed[id]; // one that failed before is tried again
    this.queue.push(pending);
  }

  /** When the head of the queue may be applied: an increase waits for its coalescing window. */
  readyAt(pending: Pending): number {
    if (pending.kind !== 'increase') return pending.arrivedAt;
    return pending.arrivedAt + (pending.request.coalesceSeconds ?? 0) * 1000;
  }

  headReadyAt(): number | undefined {
    const head = this.queue[0];
    return head?.kind === 'increase' ? this.readyAt(head) : undefined;
  }

  increasesReady(now: number): boolean {
    const head = this.queue[0];
    return head?.kind === 'increase' && this.readyAt(head) <= now;
  }

  hasRetirement(): boolean {
    return this.queue.some((p) => p.kind === 'retire');
  }

  /** Work that is due now: something to answer again, a retirement, or increases whose window has passed. */
  hasWorkDue(now: number): boolean {
    const head = this.queue[0];
    return this.toAnswerAgain.length > 0 || this.hasRetirement() || (head !== undefined && this.readyAt(head) <= now);
  }

  /**
   * The next batch to apply: every increase at the head of the queue once the window of the first has passed (one
   * SetDesiredCapacity for all), or one retirement, which does not wait behind increases still gathering.
   */
  takeBatch(now: number): Pending[] {
    const head = this.queue[0];
    let batch: Pending[] = [];
    if (head?.kind === 'retire') batch = this.queue.splice(0, 1);
    else if (head && this.readyAt(head) > now) {
      const retire = this.queue.findIndex((p) => p.kind === 'retire');
      batch = retire === -1 ? [] : this.queue.splice(retire, 1);
    } else if (head) {
      const end = this.queue.findIndex((p) => p.kind !== 'increase');
      batch = this.queue.splice(0, end === -1 ? this.queue.length : end);
    }
    for (const pending of batch) this.applying.set(pending.request.requestId, pending);
    return batch;
  }

  /** Moves every queued look ("is it still running?") into a look's batch: looks waiting together share one read. */
  addWaitingLooks(batch: Pending[]): void {
    const isLook = (p: Pending): boolean => p.kind === 'retire' && !p.request.terminate;
    if (batch[0] === undefined || !isLook(batch[0])) return;
    const looks = this.queue.filter(isLook);
    this.queue.splice(0, this.queue.length, ...this.queue.filter((p) => !isLook(p)));
    for (const look of looks) this.applying.set(look.request.requestId, look);
    batch.push(...looks);
  }

  /**
   * The drain slot an increase asked for with its replacement was asked for or given back on its own (an interruption
   * notice drains at once, often before this workflow applied the increase): its waiter must not take it again.
   */
  dropDrainSlot(drainSlotRequestId: string): void {
    for (const pending of [...this.queue, ...this.applying.values()]) {
      // In place: a batch being applied holds these very requests.
      if (pending.kind === 'increase' && pending.request.waiter.drainSlot?.requestId === drainSlotRequestId) delete pending.request.waiter.drainSlot;
    }
  }

  record(requestId: string, kind: CapacityRecord['kind'], result: CapacityRecord['result'], at: string): void {
    this.completed[requestId] = { requestId, kind, at, result };
  }

  /** A dry run's answer: sent like any other, but kept out of the records. */
  pretend(requestId: string, kind: CapacityRecord['kind'], result: CapacityRecord['result'], at: string): void {
    this.pretended[requestId] = { requestId, kind, at, result };
  }

  /** The batch is done: requests it did not answer failed with this message (and failure type, if it had one). */
  finish(batch: Pending[], failure?: string, failureType?: string): void {
    for (const { request } of batch) {
      if (failure !== undefined && !this.completed[request.requestId]) this.failed[request.requestId] = { message: failure, ...(failureType ? { type: failureType } : {}) };
    }
    this.applying.clear();
  }

  /** The answers to these requests, each to the workflow that asked. */
  answersFor(batch: Pending[]): WorkflowAnswer[] {
    return batch.flatMap((pending): WorkflowAnswer[] => {
      const { requestId } = pending.request;
      const record = this.completed[requestId] ?? this.pretended[requestId];
      delete this.pretended[requestId];
      const failed = { status: 'failed' as const, ...(this.failed[requestId] ?? { message: 'request failed' }) };
      if (pending.kind === 'increase') {
        const { workflowId } = pending.request.waiter;
        const answer = { requestId, ...(record ? record.result : failed) } as CapacityAnswer;
        // A request answered before (a new run of the same instance asks again): it hears about its instance again too.
        const told = [record?.replacement, record?.lateReplacement].filter((a): a is ReplacementAnswer => a !== undefined);
        const replacement = told.map((told) => ({ workflowId, signalName: replacementAnswerSignal.name, answer: told }));
        return [{ workflowId, signalName: capacityAnswerSignal.name, answer }, ...replacement];
      }
      const answer = { requestId, ...(record ? record.result : failed) } as RetirementAnswer;
      return [{ workflowId: pending.request.replyTo, signalName: retirementAnswerSignal.name, answer }];
    });
  }

  /** What the next run must know; the answers to `pinned` requests (those of open books) are kept whatever their age. */
  carried(pinned: ReadonlySet<string> = new Set()): Pick<CapacityCarriedState, 'completed' | 'retired'> {
    const recent = mostRecent(this.completed);
    for (const id of pinned) if (this.completed[id] && !recent[id]) recent[id] = this.completed[id];
    return { completed: recent, retired: mostRecent(this.retired) };
  }
}

/** The newest entries of a record (insertion order), bounded in count and in size. */
function mostRecent<T>(entries: Record<string, T>): Record<string, T> {
  const kept: [string, T][] = [];
  let size = 0;
  for (const [key, value] of Object.entries(entries).slice(-MAX_REMEMBERED_REQUESTS).reverse()) {
    size += key.length + JSON.stringify(value).length;
    if (size > MAX_CARRIED_BYTES) break;
    kept.push([key, value]);
  }
  return Object.fromEntries(kept.reverse());
}
