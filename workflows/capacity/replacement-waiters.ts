// The workflows waiting for a new instance of the group, and the rules of the one poll that serves them all: new
// InService instances go to the oldest waiters first (never one instance to two waiters), a capacity error that
// started after a waiter's request ends its wait, and so does its deadline. Pure: unit-tested without a server.
import type { CapacityProblem, GroupProgress } from '../shared/activity-types.js';
import {
  type DrainSlotAnswer,
  type FallbackTarget,
  LATE_SUFFIX,
  type LateWaiter,
  type DrainSlotRequest,
  type GroupWaits,
  type IncreaseCapacityRequest,
  type ReplacementAnswer,
  type ReplacementWaiter,
  replacementAnswerSignal,
  type WorkflowAnswer,
} from './api.js';

/** A waiter whose wait ended without an instance is watched this long for a late one. */
export const LATE_WATCH_MS = 60 * 60_000;
/** A late watch goes on past its hour while a launch may be its own, but not past this (a lifecycle hook's 2 h, and more). */
const LATE_KEPT_MAX_MS = 6 * 60 * 60_000;
/** While only late waiters are watched, the group is polled this often (instances only). */
export const LATE_POLL_MS = 60_000;
/**
 * A shortfall of launches for the waiters must still be there this long after it was first seen before a waiter is
 * withdrawn: a read of the group can show a decrement before the instance it came with has left InService.
 */
export const SHORTFALL_CONFIRM_MS = 5_000;

/** What a look at the group says about launches for the waiters: its desired capacity and the instances it counts. */
export interface CountedGroup {
  desiredCapacity: number;
  /** The instances desired counts: InService and launching (not Terminating, not Standby). */
  counted: string[];
}

/** A late instance of an on-demand fallback, to report to its pair's monitor. */
export interface LateFallback {
  instanceId: string;
  at: string;
  fallbackFor: FallbackTarget;
}

/** Capacity-error detection for one waiter: a problem of a scaling activity that started at or after its request. */
export function capacityErrorFor(waiter: Pick<ReplacementWaiter, 'since'>, problems: CapacityProblem[]): CapacityProblem | undefined {
  return problems.find((p) => Date.parse(p.startTime) >= Date.parse(waiter.since));
}

export class ReplacementWaiters {
  readonly waits: GroupWaits;
  /** When the next poll of the group is due (undefined: nobody waits). */
  nextPollAt: number | undefined;
  /** New instances launching for the waiters at the latest poll, when there were enough for all of them. */
  launchingForWaiters: number | undefined;
  /** The group's desired capacity at the latest poll (fresher than the last full look in a wave). */
  desiredAtLastPoll: number | undefined;
  /** Late on-demand instances found by the latest poll, for the capacity workflow to report to their monitors. */
  lateFallbacks: LateFallback[] = [];
  /** On-demand fallbacks whose late watch ended with nothing launched: increases to give back if nothing is launching. */
  lapsedFallbacks = 0;
  /** When the group was first seen launching fewer instances than the waiters claim (undefined: no shortfall). */
  private shortfallSince: number | undefined;

  constructor(carried: GroupWaits | undefined, now: number) {
    this.waits = carried ?? { waiters: [], baseline: [], assigned: [], polls: 0 };
    this.nextPollAt = this.waits.waiters.length > 0 || this.late.length > 0 ? now : undefined;
  }

  private get late(): LateWaiter[] {
    return (this.waits.late ??= []);
  }

  get lateCount(): number {
    return this.late.length;
  }

  get count(): number {
    return this.waits.waiters.length;
  }

  /** A granted increase starts waiting; `instancesBefore` were in the group just before the increase. */
  add(request: IncreaseCapacityRequest, since: string, instancesBefore: string[], now: number, dryRun = false): void {
    const { waiter } = request;
    if (this.waits.waiters.some((w) => w.requestId === request.requestId)) return;
    if (this.waits.waiters.length === 0) {
      this.waits.baseline = instancesBefore;
      this.waits.assigned = [];
      // The first waiter of a wave gets a look at once (AWS often refuses capacity within seconds); later ones ride
      // the running schedule, so a wave costs one poll per interval however many join it.
      this.nextPollAt = now;
    }
    this.waits.waiters.push({
      requestId: request.requestId,
      workflowId: waiter.workflowId,
      waitSeconds: waiter.waitSeconds,
      pollIntervalSeconds: waiter.pollIntervalSeconds,
      ...(waiter.drainSlot ? { drainSlot: waiter.drainSlot } : {}),
      ...(waiter.fallbackFor ? { fallbackFor: waiter.fallbackFor } : {}),
      since,
      deadline: new Date(now + waiter.waitSeconds * 1000).toISOString(),
      pollsBefore: this.waits.polls,
      ...(dryRun ? { dryRun: true as const } : {}),
    });
    const due = now + waiter.pollIntervalSeconds * 1000;
    this.nextPollAt = this.nextPollAt === undefined ? due : Math.min(this.nextPollAt, due);
  }

  /** The waiter asked for its drain slot on its own (it drains at once): its instance's answer must not take another. */
  dropDrainSlot(requestId: string): void {
    for (const waiter of this.waits.waiters) if (waiter.drainSlot?.requestId === requestId) delete waiter.drainSlot;
  }

  /** New instances given to the current waiters: none of them is the group's replacement for a departed instance. */
  takenInstances(): ReadonlySet<string> {
    return new Set(this.waits.assigned);
  }

  pollDue(now: number): boolean {
    return this.nextPollAt !== undefined && this.nextPollAt <= now;
  }

  /**
   * The input of the next poll. Once a launch is under way for every waiter, no capacity failure of theirs is left to
   * read in the scaling activities (a launch lost while Pending shows as one instance fewer, and the next poll reads
   * them again): the instances alone tell when one is InService, at one call a look instead of two.
   */
  startPoll(asgName: string): { asgName: string; since: string; instancesOnly?: true } {
    this.waits.polls++;
    const since = this.waits.waiters.map((w) => w.since).sort()[0] ?? new Date(0).toISOString();
    // Late waiters need no capacity problems read: only whether an instance came.
    const instancesOnly = this.waits.waiters.length === 0 || (this.launchingForWaiters !== undefined && this.launchingForWaiters >= this.waits.waiters.length);
    return instancesOnly ? { asgName, since, instancesOnly } : { asgName, since };
  }

  /**
   * What a poll (undefined: the poll failed, no news) means for each waiter, and the next poll's time. `drainSlotFor`
   * answers the drain slot a spot waiter asked for with its instance.
   */
  settle(progress: GroupProgress | undefined, now: number, drainSlotFor: (request: Omit<DrainSlotRequest, 'bypass'>) => DrainSlotAnswer | undefined): WorkflowAnswer[] {
    if (progress) this.desiredAtLastPoll = progress.desiredCapacity;
    const at = new Date(now).toISOString();
    const answers = progress ? this.assignInstances(progress, at, drainSlotFor) : [];
    const answered = new Set(answers.map((a) => a.requestId));
    if (progress) answers.push(...this.withdrawn({ desiredCapacity: progress.desiredCapacity, counted: [...progress.inService, ...progress.launching] }, now, answered));
    for (const answer of answers) answered.add(answer.requestId);
    const unanswered = (): ReplacementWaiter[] => this.waits.waiters.filter((w) => !answered.has(w.requestId));
    const add = (waiter: ReplacementWaiter, answer: ReplacementAnswer): void => {
      answers.push(answer);
      answered.add(waiter.requestId);
    };
    for (const waiter of progress ? unanswered() : []) {
      const problem = capacityErrorFor(waiter, progress?.capacityProblems ?? []);
      if (problem) add(waiter, this.answer(waiter, at, { status: 'capacity-problem', message: `${problem.statusCode}: ${problem.message}` }));
    }
    for (const waiter of unanswered().filter((w) => Date.parse(w.deadline) <= now)) {
      add(waiter, this.answer(waiter, at, { status: 'timed-out', waitSeconds: waiter.waitSeconds }));
    }
    const workflowOf = new Map(this.waits.waiters.map((w) => [w.requestId, w.workflowId]));
    const ended = answers.filter((a) => a.status !== 'in-service' && a.status !== 'withdrawn').map((a) => this.waits.waiters.find((w) => w.requestId === a.requestId));
    this.waits.waiters = unanswered();
    // Those already watched get this poll's new instances first; then the waits that just ended start watching.
    if (progress) answers.push(...this.answerLate(progress, at, workflowOf));
    for (const waiter of ended) this.watchLate(waiter, now, progress);
    this.lapseLate(now, progress);
    this.schedule(progress ? this.launchingFresh(progress) : 0, now);
    return toWaiters(answers, workflowOf);
  }

  /**
   * Waiters whose +1 someone else took back, after a full look at the group; their answers, to send. See withdrawn().
   */
  withdrawUnbacked(look: CountedGroup, now: number): WorkflowAnswer[] {
    const answers = this.withdrawn(look, now, new Set());
    const workflowOf = new Map(this.waits.waiters.map((w) => [w.requestId, w.workflowId]));
    const gone = new Set(answers.map((a) => a.requestId));
    this.waits.waiters = this.waits.waiters.filter((w) => !gone.has(w.requestId));
    if (answers.length > 0 && this.waits.waiters.length === 0) this.schedule(0, now);
    return toWaiters(answers, workflowOf);
  }

  carried(): GroupWaits | undefined {
    return this.waits.waiters.length > 0 || this.late.length > 0 ? this.waits : undefined;
  }

  /**
   * Its wait ended without an instance, but desired stays raised for it: a later instance is still its own. What is
   * InService now (and the wave's instances) is nobody's late instance; one still launching may be.
   */
  private watchLate(waiter: ReplacementWaiter | undefined, now: number, progress: GroupProgress | undefined): void {
    if (!waiter) return;
    const { requestId, workflowId, since, fallbackFor } = waiter;
    this.late.push({ requestId, workflowId, since, lateUntil: new Date(now + LATE_WATCH_MS).toISOString(), ...(fallbackFor ? { fallbackFor } : {}) });
    this.knowForLate([...this.waits.baseline, ...this.waits.assigned, ...(progress?.inService ?? [])]);
  }

  /** Instances that are no late waiter's: those there when a watch began, and those given to any waiter since. */
  private knowForLate(instanceIds: string[]): void {
    if (this.late.length === 0) return;
    const known = new Set(this.waits.lateKnown ?? []);
    for (const id of instanceIds) known.add(id);
    this.waits.lateKnown = [...known];
  }

  /** New InService instances the waiters left over go to late waiters, oldest first, each told under `<id>/late`. */
  private answerLate(progress: GroupProgress, at: string, workflowOf: Map<string, string>): ReplacementAnswer[] {
    const taken = new Set([...(this.waits.lateKnown ?? []), ...this.waits.assigned]);
    const fresh = progress.inService.filter((id) => !taken.has(id));
    const answers: ReplacementAnswer[] = [];
    while (fresh.length > 0 && this.late.length > 0) {
      const late = this.late.shift() as LateWaiter;
      const instanceId = fresh.shift() as string;
      this.knowForLate([instanceId]);
      const requestId = `${late.requestId}${LATE_SUFFIX}`;
      workflowOf.set(requestId, late.workflowId);
      answers.push({ requestId, status: 'in-service', instanceId, at, polls: 0 });
      if (late.fallbackFor) this.lateFallbacks.push({ instanceId, at, fallbackFor: late.fallbackFor });
    }
    return answers;
  }

  /**
   * Late watches whose time is up end, but as many as new instances are still launching go on (the oldest first): a
   * launch under way may be theirs, and would come with nobody to report it to. Without news (a failed poll) none ends.
   * On-demand fallbacks among those that end are counted for giving back.
   */
  private lapseLate(now: number, progress: GroupProgress | undefined): void {
    const due = this.late.filter((l) => Date.parse(l.lateUntil) <= now);
    if (due.length === 0 || !progress) return;
    const known = new Set([...(this.waits.lateKnown ?? []), ...this.waits.assigned]);
    const launching = progress.launching.filter((id) => !known.has(id)).length;
    // A launch stuck for longer than any lifecycle hook may hold it is nobody's to wait for.
    const overdue = (l: LateWaiter): boolean => Date.parse(l.lateUntil) + LATE_KEPT_MAX_MS <= now;
    const kept = due.filter((l) => !overdue(l)).slice(0, launching);
    const lapsed = new Set(due.filter((l) => !kept.includes(l)));
    if (lapsed.size === 0) return;
    this.waits.late = this.late.filter((l) => !lapsed.has(l));
    this.lapsedFallbacks += [...lapsed].filter((l) => l.fallbackFor).length;
  }

  /** New InService instances, none of them anyone's yet, to the oldest waiters first. */
  private assignInstances(progress: GroupProgress, at: string, drainSlotFor: (request: Omit<DrainSlotRequest, 'bypass'>) => DrainSlotAnswer | undefined): ReplacementAnswer[] {
    const taken = new Set([...this.waits.baseline, ...this.waits.assigned]);
    const fresh = progress.inService.filter((id) => !taken.has(id));
    const answers: ReplacementAnswer[] = [];
    for (const waiter of this.waits.waiters) {
      const instanceId = fresh.shift();
      if (!instanceId) break;
      this.waits.assigned.push(instanceId);
      this.knowForLate([instanceId]);
      // The drain slot it will need now goes with the instance: no request and answer of their own per node.
      const drainSlot = waiter.drainSlot ? drainSlotFor(waiter.drainSlot) : undefined;
      answers.push(this.answer(waiter, at, { status: 'in-service', instanceId, ...(drainSlot ? { drainSlot } : {}) }));
    }
    return answers;
  }

  /**
   * Someone else removed a launching instance with a decrement (or lowered desired): the group now launches fewer new
   * instances than there are waiters, and would give the next one to a waiter whose +1 is gone while a newer waiter,
   * whose +1 stands, times out with its instance in the group. Once the shortfall has lasted SHORTFALL_CONFIRM_MS, that
   * many waiters are withdrawn, the oldest first: any waiter older than the decrement may have lost its +1, and the
   * oldest always is. Counts, not instance ids, decide: which launch was whose is not known. `answered`: already
   * answered at this poll (not waiting any more).
   */
  private withdrawn(look: CountedGroup, now: number, answered: ReadonlySet<string>): ReplacementAnswer[] {
    const claims = this.waits.waiters.filter((w) => !w.dryRun && !answered.has(w.requestId));
    const known = new Set([...this.waits.baseline, ...this.waits.assigned, ...(this.waits.lateKnown ?? [])]);
    const notNew = look.counted.filter((id) => known.has(id)).length;
    const shortfall = claims.length - Math.max(0, look.desiredCapacity - notNew);
    if (shortfall <= 0) {
      this.shortfallSince = undefined;
      return [];
    }
    this.shortfallSince ??= now;
    if (now - this.shortfallSince < SHORTFALL_CONFIRM_MS) return [];
    this.shortfallSince = undefined;
    const at = new Date(now).toISOString();
    const reason = `desired capacity ${look.desiredCapacity} leaves room for ${claims.length - shortfall} new instance(s) for ${claims.length} waiter(s): someone else took a +1 back (a launching instance removed with a decrement, or desired lowered)`;
    return claims.slice(0, shortfall).map((waiter) => this.answer(waiter, at, { status: 'withdrawn', reason }));
  }

  /** Waiters (not a dry run's) for whom no new instance is launching yet: desired counts launches still to come for them. */
  unlaunchedClaims(progress: GroupProgress): number {
    return Math.max(0, this.waits.waiters.filter((w) => !w.dryRun).length - this.launchingFresh(progress));
  }

  private launchingFresh(progress: GroupProgress): number {
    const taken = new Set([...this.waits.baseline, ...this.waits.assigned]);
    return progress.launching.filter((id) => !taken.has(id)).length;
  }

  /** The next poll: every interval, twice as often while instances launch for every waiter, and by the first deadline. */
  private schedule(launching: number, now: number): void {
    const waiters = this.waits.waiters;
    this.launchingForWaiters = waiters.length > 0 && launching >= waiters.length ? launching : undefined;
    if (this.late.length === 0) delete this.waits.lateKnown;
    if (waiters.length === 0 && this.late.length > 0) {
      // By the next deadline still ahead; a watch kept past its own (a launch under way) is looked at once a minute.
      const firstLapse = Math.min(...this.late.map((l) => Date.parse(l.lateUntil)).filter((at) => at > now));
      this.nextPollAt = Math.min(now + LATE_POLL_MS, Math.max(firstLapse, now + 1000));
      return;
    }
    if (waiters.length === 0) {
      this.waits.baseline = [];
      this.waits.assigned = [];
      this.nextPollAt = undefined;
      return;
    }
    // Instances-only looks come twice as often, for as many Auto Scaling calls: a new instance is noticed sooner.
    const interval = (Math.min(...waiters.map((w) => w.pollIntervalSeconds)) * 1000) / (this.launchingForWaiters === undefined ? 1 : 2);
    const firstDeadline = Math.min(...waiters.map((w) => Date.parse(w.deadline)));
    this.nextPollAt = Math.min(onPollGrid(now, interval), Math.max(firstDeadline, now + 1000));
  }

  private answer(waiter: ReplacementWaiter, at: string, outcome: DistributiveOmit<ReplacementAnswer, 'requestId' | 'at' | 'polls'>): ReplacementAnswer {
    return { requestId: waiter.requestId, at, polls: this.waits.polls - waiter.pollsBefore, ...outcome };
  }
}

/**
 * The next poll on the wall clock's grid of the interval (multiples of it since the epoch), from half an interval to
 * one and a half ahead: every group's capacity workflow looks at the same instants, so the worker reads the groups
 * polled together in one DescribeAutoScalingGroups (activities/auto-scaling.ts) and a wave over many groups costs
 * about the calls of one.
 */
export function onPollGrid(now: number, interval: number): number {
  return Math.ceil((now + interval / 2) / interval) * interval;
}

/** Each answer, addressed to the workflow of its request. */
function toWaiters(answers: ReplacementAnswer[], workflowOf: ReadonlyMap<string, string>): WorkflowAnswer[] {
  return answers.map((answer) => ({ workflowId: workflowOf.get(answer.requestId) ?? '', signalName: replacementAnswerSignal.name, answer }));
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
