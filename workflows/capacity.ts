// The capacity workflow: one long-lived entity per Auto Scaling group through which every desired-capacity change of
// that group goes. Requests arrive as signals or Updates and are applied one batch at a time by a single loop, so two
// nodes warned at the same moment yield +2 (never a lost read-modify-write), and each change is an absolute target
// recorded in history, so a retried activity re-applies the same number instead of adding again.
//
// In a wave of interruptions it is also the group's only poller: one look at the group per interval serves every
// workflow waiting for a new instance, each told by signal which instance is its own. Its Auto Scaling calls grow with
// the number of groups, not of nodes. And it keeps the group's disruption budget: how many nodes drain at once.
import {
  ActivityFailure,
  ApplicationFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  log,
  patched,
  type SignalDefinition,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { AutoScalingActivities, GroupSnapshot } from '../activities/auto-scaling.js';
import type { CapacityRequestActivities } from '../activities/capacity-requests.js';
import {
  type CapacityAnswer,
  capacityAnswerSignal,
  type CapacityRecord,
  capacityStatusQuery,
  type CapacityWorkflowInput,
  describeDrainBudget,
  drainBudgetLimit,
  type DrainQueue,
  type DrainSlotAnswer,
  drainSlotAnswerSignal,
  type DrainSlotRequest,
  drainSlotRequestSignal,
  type GroupWaits,
  type IncreaseCapacityRequest,
  type IncreaseCapacityResult,
  increaseCapacityRequestSignal,
  increaseCapacityUpdate,
  isTerminatingState,
  type RetireInstanceRequest,
  type RetireInstanceResult,
  type RetiredInstance,
  type RetirementAnswer,
  releaseDrainSlotSignal,
  type ReplacementAnswer,
  replacementAnswerSignal,
  type ReplacementWaiter,
  retireInstanceRequestSignal,
  retireInstanceUpdate,
  retirementAnswerSignal,
  searchAttributes,
  type WorkflowAnswer,
} from './definitions.js';
import { rootMessage } from './failures.js';

const { describeGroup, setDesiredCapacity, terminateInstanceInGroup } = proxyActivities<AutoScalingActivities>({
  startToCloseTimeout: '30 seconds',
  // Throttling and AWS-side errors back off and retry; after 10 minutes the request fails and its caller decides.
  scheduleToCloseTimeout: '10 minutes',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

// Answers that cannot be delivered within minutes are given up: the waiting workflows ask again or reach a backstop.
const { sendAnswers } = proxyActivities<CapacityRequestActivities>({
  startToCloseTimeout: '2 minutes',
  scheduleToCloseTimeout: '5 minutes',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

// A poll is worth little once the next is due: a failed poll is "no news" and the waiters wait on.
const { describeGroupProgress } = proxyActivities<AutoScalingActivities>({
  startToCloseTimeout: '20 seconds',
  scheduleToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

/** Completed requests remembered for deduplication, carried across continue-as-new. */
const MAX_REMEMBERED_REQUESTS = 500;
/** Size bound of each carried record set (JSON characters). */
const MAX_CARRIED_BYTES = 256 * 1024;
/** Continue-as-new well before Temporal's limits even if the server has not suggested it yet. */
const DEFAULT_HISTORY_BOUND = 10_000;

type Pending =
  | { kind: 'increase'; request: IncreaseCapacityRequest; arrivedAt: number }
  | { kind: 'retire'; request: RetireInstanceRequest; arrivedAt: number };

/** An answer for one waiting workflow, by the signal it listens on. */
interface Telling {
  workflowId: string;
  signal: SignalDefinition<[WorkflowAnswer['answer']]>;
  answer: WorkflowAnswer['answer'];
}

function telling<T extends WorkflowAnswer['answer']>(workflowId: string, signal: SignalDefinition<[T]>, answer: T): Telling {
  return { workflowId, signal: signal as SignalDefinition<[WorkflowAnswer['answer']]>, answer };
}

/** Answers per sendAnswers activity: keeps each one's input, recorded in history, far below the payload limit. */
const ANSWERS_PER_ACTIVITY = 250;
/** sendAnswers activities at once: a wave's answers go out in parallel without one group flooding the server. */
const MAX_DELIVERIES_IN_FLIGHT = 4;

const MAX_WAIT_SECONDS = 24 * 3600;
const MAX_UPDATES_PER_RUN = 1000;


export async function capacityWorkflow(input: CapacityWorkflowInput & { historyBound?: number }): Promise<never> {
  const { asgName } = input;
  const historyBound = input.historyBound ?? DEFAULT_HISTORY_BOUND;
  const completed: Record<string, CapacityRecord> = { ...(input.carried?.completed ?? {}) };
  const retired: Record<string, RetiredInstance> = { ...(input.carried?.retired ?? {}) };
  const failed: Record<string, string> = {};
  const queue: Pending[] = [];
  let appliedChanges = input.carried?.appliedChanges ?? 0;
  let lastGroup: GroupSnapshot | undefined;
  let warnedAboutCapacityRebalance = false;
  const waits: GroupWaits = input.carried?.waits ?? { waiters: [], baseline: [], assigned: [], polls: 0 };
  const drains: DrainQueue = input.carried?.drains ?? { draining: [], queued: [] };
  let nextPollAt: number | undefined = waits.waiters.length > 0 ? Date.now() : undefined;
  /** New instances still launching at the latest poll, when there were enough of them for every waiter. */
  let launchingForWaiters: number | undefined;
  // Temporal caps the Updates of one run (2000 by default): continue as new well before.
  let updatesThisRun = 0;
  /** The group's desired capacity at the latest poll (fresher than the last describe in a wave). */
  let waitsDesired: number | undefined;

  if (workflowInfo().typedSearchAttributes.get(searchAttributes.asg) !== asgName) {
    upsertSearchAttributes([{ key: searchAttributes.asg, value: asgName }]);
  }

  setHandler(capacityStatusQuery, () => ({
    asgName,
    pendingRequests: queue.map((p) => p.request.requestId),
    lastDesired: lastGroup?.desiredCapacity,
    lastMaxSize: lastGroup?.maxSize,
    appliedChanges,
    recent: Object.values(completed).slice(-20),
    waiting: {
      count: waits.waiters.length,
      oldestSince: waits.waiters[0]?.since,
      polls: waits.polls,
      assigned: waits.assigned.length,
      launching: launchingForWaiters ?? 0,
    },
    drainBudget: drains.budget ? { limit: drainLimit(), budget: describeDrainBudget(drains.budget) } : undefined,
    draining: drains.draining,
    drainQueue: drains.queued.map((q) => ({ instanceId: q.instanceId, nodeName: q.nodeName, queuedAt: q.queuedAt })),
  }));

  /** Requests of the batch being applied: a copy arriving meanwhile (a retried sender) gets the batch's answer. */
  const applying = new Set<string>();

  /** Queues a request unless it was answered or is waiting already; one that failed before is tried again. */
  function enqueue(pending: Pending): void {
    const id = pending.request.requestId;
    if (completed[id] || queue.some((p) => p.request.requestId === id)) return;
    // Runs recorded before queued such a copy again, and applied it a second time.
    if (applying.has(id) && patched('dedupe-requests-being-applied')) return;
    delete failed[id];
    queue.push(pending);
  }

  async function enqueueAndWait<R>(pending: Pending): Promise<R> {
    const id = pending.request.requestId;
    enqueue(pending);
    await condition(() => completed[id] !== undefined || failed[id] !== undefined);
    const record = completed[id];
    if (!record) throw ApplicationFailure.nonRetryable(failed[id] ?? 'request failed', 'CapacityRequestFailed');
    return record.result as R;
  }

  setHandler(
    increaseCapacityUpdate,
    async (request) => {
      updatesThisRun++;
      if (!request.waiter) return enqueueAndWait<IncreaseCapacityResult>({ kind: 'increase', request, arrivedAt: Date.now() });
      return enqueueForWaiter(request);
    },
    {
      validator: (request) => {
        requireRequestId(request, completed, 'increase');
        requireIncreaseOptions(request);
      },
    },
  );
  // The same request by signal (Signal-with-Start from an activity): no cap on requests in flight in a wave.
  /** Signalled requests answered before (the signal was sent again after a lost acknowledgement): answer again. */
  const reanswer: Pending[] = [];
  setHandler(increaseCapacityRequestSignal, (request) => {
    try {
      requireRequestId(request, completed, 'increase');
      requireIncreaseOptions(request);
      if (!request.waiter) throw new Error('a signalled increase request needs a waiter to answer');
    } catch (error) {
      log.error('malformed increase request ignored', { asgName, error: rootMessage(error) });
      return;
    }
    takeSignalled({ kind: 'increase', request, arrivedAt: Date.now() });
  });

  /** A request that came by signal: answered again if it was answered before (its signal sent again), else queued. */
  function takeSignalled(pending: Pending): void {
    if (completed[pending.request.requestId]) reanswer.push(pending);
    else enqueue(pending);
  }

  function enqueueForWaiter(request: IncreaseCapacityRequest): IncreaseCapacityResult {
    const earlier = completed[request.requestId];
    if (earlier) return earlier.result as IncreaseCapacityResult;
    enqueue({ kind: 'increase', request, arrivedAt: Date.now() });
    return { status: 'queued' };
  }

  setHandler(
    retireInstanceUpdate,
    (request) => {
      updatesThisRun++;
      return enqueueAndWait<RetireInstanceResult>({ kind: 'retire', request, arrivedAt: Date.now() });
    },
    { validator: (request) => requireRetireRequest(request, completed) },
  );
  // The same request by signal, answered by signal: a wave sends hundreds of "still running?" looks at once.
  setHandler(retireInstanceRequestSignal, (request) => {
    try {
      requireRetireRequest(request, completed);
      if (!request.replyTo) throw new Error('a signalled retirement request needs replyTo, the workflow to answer');
    } catch (error) {
      log.error('malformed retirement request ignored', { asgName, error: rootMessage(error) });
      return;
    }
    takeSignalled({ kind: 'retire', request, arrivedAt: Date.now() });
  });

  // --- disruption budget ------------------------------------------------------------------------------------

  function drainLimit(): number {
    return drains.budget ? drainBudgetLimit(drains.budget, waitsDesired ?? lastGroup?.desiredCapacity ?? 0) : 1;
  }

  // Asked for by signal; answered by the main loop, which reads the group first if its size is not known yet.
  const drainRequests: DrainSlotRequest[] = [];
  setHandler(drainSlotRequestSignal, (request) => {
    try {
      requireDrainSlotRequest(request);
    } catch (error) {
      log.error('malformed drain slot request ignored', { asgName, error: rootMessage(error) });
      return;
    }
    // Asked for on its own (an interruption notice drains at once): not again when its instance is InService, where
    // it would take a slot nobody gives back.
    for (const waiter of waits.waiters) if (waiter.drainSlot?.requestId === request.requestId) delete waiter.drainSlot;
    drainRequests.push(request);
  });

  /** The answer to a drain slot request; none to a request asked again while it waits in the queue. */
  function answerDrainRequest(request: DrainSlotRequest): DrainSlotAnswer | undefined {
    const { requestId } = request;
    drains.budget = request.budget;
    if (drains.draining.some((d) => d.requestId === requestId)) return { requestId, status: 'granted' };
    const queuedAt = drains.queued.findIndex((q) => q.requestId === requestId);
    if (queuedAt >= 0 && !request.bypass) {
      // Each waiting workflow asks again every minute in case this workflow lost its queue: hundreds in a wave, and
      // the answer would tell them nothing new (the live queue is in the status query). Earlier runs answered them.
      if (patched('quiet-drain-reasks')) return undefined;
      return { requestId, status: 'queued', position: queuedAt + 1, limit: drainLimit() };
    }
    if (queuedAt >= 0) drains.queued.splice(queuedAt, 1);
    if (request.bypass || (drains.queued.length === 0 && drains.draining.length < drainLimit())) {
      grantDrain(request);
      return { requestId, status: 'granted' };
    }
    drains.queued.push({ ...request, queuedAt: new Date().toISOString() });
    log.info('drain queued by the disruption budget', {
      asgName,
      instanceId: request.instanceId,
      position: drains.queued.length,
      draining: drains.draining.length,
      limit: drainLimit(),
    });
    return { requestId, status: 'queued', position: drains.queued.length, limit: drainLimit() };
  }

  async function answerDrainRequests(): Promise<void> {
    if (lastGroup === undefined && waitsDesired === undefined) {
      try {
        await lookAtGroup();
      } catch (error) {
        log.warn('could not read the group size for the disruption budget; counting it as 0 (budget of 1)', { asgName, error: rootMessage(error) });
      }
    }
    const tellings: Telling[] = [];
    for (const request of drainRequests.splice(0, drainRequests.length)) {
      const answer = answerDrainRequest(request);
      if (answer) tellings.push(telling(request.workflowId, drainSlotAnswerSignal, answer));
    }
    await tellAll(tellings);
  }

  setHandler(releaseDrainSlotSignal, ({ requestId }) => {
    drains.draining = drains.draining.filter((d) => d.requestId !== requestId);
    drains.queued = drains.queued.filter((q) => q.requestId !== requestId);
  });

  function grantDrain(request: DrainSlotRequest): void {
    const now = Date.now();
    drains.draining.push({
      requestId: request.requestId,
      workflowId: request.workflowId,
      instanceId: request.instanceId,
      nodeName: request.nodeName,
      since: new Date(now).toISOString(),
      leaseUntil: new Date(now + request.leaseSeconds * 1000).toISOString(),
      bypass: request.bypass ?? false,
    });
  }

  const drainsToPromote = (): boolean => drains.queued.length > 0 && drains.draining.length < drainLimit();

  /** Frees slots whose holder never released them, then lets the queue move up in order. */
  async function moveDrainQueue(): Promise<void> {
    const now = Date.now();
    const expired = drains.draining.filter((d) => Date.parse(d.leaseUntil) <= now);
    for (const holder of expired) log.warn('drain slot lease expired without a release', { asgName, ...holder });
    drains.draining = drains.draining.filter((d) => Date.parse(d.leaseUntil) > now);
    const granted: DrainSlotRequest[] = [];
    while (drainsToPromote()) {
      const next = drains.queued.shift() as DrainSlotRequest;
      grantDrain(next);
      granted.push(next);
    }
    await tellAll(granted.map((g) => telling(g.workflowId, drainSlotAnswerSignal, { requestId: g.requestId, status: 'granted' })));
  }

  // --- waiting for new instances -------------------------------------------------------------------------------

  /** Answer deliveries under way: the loop goes on polling and applying while they run. */
  const delivering = new Set<Promise<void>>();

  /**
   * Answers waiting workflows. Since 'answers-by-activity' one sendAnswers activity per batch delivers them: a wave
   * answers hundreds at once, and as signal commands each would add two events here and a task to the server's queue.
   */
  async function tellAll(tellings: Telling[]): Promise<void> {
    if (tellings.length === 0) return;
    if (!patched('answers-by-activity')) {
      await Promise.all(tellings.map((t) => tell(t.workflowId, t.signal, t.answer)));
      return;
    }
    // Runs recorded before delivered each batch before the loop went on, so a wave's answers held up its polls.
    const inBackground = patched('answers-in-background');
    for (let i = 0; i < tellings.length; i += ANSWERS_PER_ACTIVITY) {
      const answers = tellings.slice(i, i + ANSWERS_PER_ACTIVITY).map(({ workflowId, signal, answer }) => ({ workflowId, signalName: signal.name, answer }));
      if (!inBackground) {
        await deliver(answers);
        continue;
      }
      await condition(() => delivering.size < MAX_DELIVERIES_IN_FLIGHT);
      const delivery: Promise<void> = deliver(answers).finally(() => delivering.delete(delivery));
      delivering.add(delivery);
    }
  }

  async function deliver(answers: WorkflowAnswer[]): Promise<void> {
    try {
      const { gone } = await sendAnswers({ answers });
      // The waiting workflow is gone (ended or terminated by an operator): nobody is left to tell.
      if (gone.length > 0) log.warn('some answered workflows are gone', { asgName, gone });
    } catch (error) {
      log.warn('could not deliver answers; the waiting workflows ask again or time out', { asgName, answers: answers.length, error: rootMessage(error) });
    }
  }

  async function tell<T>(workflowId: string, signal: SignalDefinition<[T]>, answer: T): Promise<void> {
    try {
      await getExternalWorkflowHandle(workflowId).signal(signal, answer);
    } catch (error) {
      // The waiting workflow is gone (ended or terminated by an operator): nobody is left to tell.
      log.warn('could not signal a waiting workflow', { asgName, workflowId, error: rootMessage(error) });
    }
  }

  function addWaiter(request: IncreaseCapacityRequest, since: string, instancesBefore: string[]): void {
    const waiter = request.waiter;
    if (!waiter || waits.waiters.some((w) => w.requestId === request.requestId)) return;
    const now = Date.now();
    if (waits.waiters.length === 0) {
      waits.baseline = instancesBefore;
      waits.assigned = [];
      // The first waiter of a wave gets a look at once (AWS often refuses capacity within seconds); later ones ride
      // the running schedule, so a wave costs one poll per interval however many join it.
      nextPollAt = now;
    }
    waits.waiters.push({
      requestId: request.requestId,
      workflowId: waiter.workflowId,
      waitSeconds: waiter.waitSeconds,
      pollIntervalSeconds: waiter.pollIntervalSeconds,
      ...(waiter.drainSlot ? { drainSlot: waiter.drainSlot } : {}),
      since,
      deadline: new Date(now + waiter.waitSeconds * 1000).toISOString(),
      pollsBefore: waits.polls,
    });
    const due = now + waiter.pollIntervalSeconds * 1000;
    nextPollAt = nextPollAt === undefined ? due : Math.min(nextPollAt, due);
  }

  /** One look at the group for every waiter: new InService instances go to the oldest waiters first. */
  async function pollForWaiters(): Promise<void> {
    waits.polls++;
    const since = waits.waiters.map((w) => w.since).sort()[0] as string;
    // A launch already under way for every waiter means no capacity failure of theirs is left to read in the scaling
    // activities (an instance lost while launching shows as one fewer, and the next poll reads them again): the
    // instances alone tell when one is InService, at one call a look instead of two.
    const instancesOnly = launchingForWaiters !== undefined && launchingForWaiters >= waits.waiters.length;
    let progress;
    try {
      progress = await describeGroupProgress(instancesOnly ? { asgName, since, instancesOnly } : { asgName, since });
      waitsDesired = progress.desiredCapacity;
    } catch (error) {
      log.warn('could not look at the group this time', { asgName, error: rootMessage(error) });
    }
    const now = Date.now();
    const at = new Date(now).toISOString();
    const answers: [ReplacementWaiter, ReplacementAnswer][] = [];
    const polls = (w: ReplacementWaiter): number => waits.polls - (w.pollsBefore ?? 0);
    /** New instances still launching: none of them is anyone's yet. */
    let launching = 0;
    if (progress) {
      const taken = new Set([...waits.baseline, ...waits.assigned]);
      const fresh = progress.inService.filter((id) => !taken.has(id));
      launching = (progress.launching ?? []).filter((id) => !taken.has(id)).length;
      for (const waiter of waits.waiters) {
        const instanceId = fresh.shift();
        if (!instanceId) break;
        waits.assigned.push(instanceId);
        // The drain slot it will need now goes with the instance: no request and answer of their own per node.
        const drainSlot = waiter.drainSlot ? answerDrainRequest(waiter.drainSlot) : undefined;
        answers.push([waiter, { requestId: waiter.requestId, status: 'in-service', instanceId, at, polls: polls(waiter), ...(drainSlot ? { drainSlot } : {}) }]);
      }
      for (const waiter of waits.waiters.slice(answers.length)) {
        const problem = progress.capacityProblems.find((p) => Date.parse(p.startTime) >= Date.parse(waiter.since));
        if (problem) {
          const message = `${problem.statusCode}: ${problem.message}`;
          answers.push([waiter, { requestId: waiter.requestId, status: 'capacity-problem', message, at, polls: polls(waiter) }]);
        }
      }
    }
    const answered = new Set(answers.map(([w]) => w.requestId));
    for (const waiter of waits.waiters) {
      if (!answered.has(waiter.requestId) && Date.parse(waiter.deadline) <= now) {
        answers.push([waiter, { requestId: waiter.requestId, status: 'timed-out', waitSeconds: waiter.waitSeconds, at, polls: polls(waiter) }]);
        answered.add(waiter.requestId);
      }
    }
    waits.waiters = waits.waiters.filter((w) => !answered.has(w.requestId));
    launchingForWaiters = undefined;
    if (waits.waiters.length > 0 && launching >= waits.waiters.length && patched('instances-only-looks-while-launching')) {
      launchingForWaiters = launching;
    }
    if (waits.waiters.length === 0) {
      waits.baseline = [];
      waits.assigned = [];
      nextPollAt = undefined;
    } else {
      // Instances-only looks come twice as often, for as many Auto Scaling calls: a new instance is noticed sooner.
      const interval = (Math.min(...waits.waiters.map((w) => w.pollIntervalSeconds)) * 1000) / (launchingForWaiters === undefined ? 1 : 2);
      const firstDeadline = Math.min(...waits.waiters.map((w) => Date.parse(w.deadline)));
      nextPollAt = Math.min(now + interval, Math.max(firstDeadline, now + 1000));
    }
    if (answers.length > 0) {
      log.info('answered waiting workflows', { asgName, answers: answers.length, waiting: waits.waiters.length, polls: waits.polls });
    }
    await tellAll(answers.map(([waiter, answer]) => telling(waiter.workflowId, replacementAnswerSignal, answer)));
  }

  /**
   * A retirement is applied alone, except looks that change nothing unless AWS took the instance ("is it still
   * running?"): those waiting together share one read of the group, as a wave sends hundreds of them at once.
   */
  async function applyRetires(batch: Pending[]): Promise<void> {
    const first = batch[0]?.request as RetireInstanceRequest;
    const isLook = (p: Pending): boolean => p.kind === 'retire' && !p.request.terminate;
    if (first.terminate || !queue.some(isLook) || !patched('batched-watch-looks')) return applyRetire(first);
    const looks = queue.filter(isLook);
    queue.splice(0, queue.length, ...queue.filter((p) => !isLook(p)));
    batch.push(...looks);
    for (const look of looks) applying.add(look.request.requestId);
    const group = await lookAtGroup();
    for (const pending of batch) await applyRetire(pending.request as RetireInstanceRequest, group);
  }

  /** Requests that came by signal learn their answer (or failure) by signal: increases, retirements and looks. */
  async function answerSignalled(batch: Pending[]): Promise<void> {
    const tellings: Telling[] = [];
    for (const pending of batch) {
      const { requestId } = pending.request;
      const message = failed[requestId] ?? 'request failed';
      if (pending.kind === 'increase' && pending.request.waiter) {
        const result = completed[requestId]?.result as Exclude<IncreaseCapacityResult, { status: 'queued' }> | undefined;
        const answer: CapacityAnswer = result ? { requestId, ...result } : { requestId, status: 'failed', message };
        tellings.push(telling(pending.request.waiter.workflowId, capacityAnswerSignal, answer));
      } else if (pending.kind === 'retire' && pending.request.replyTo) {
        const result = completed[requestId]?.result as RetireInstanceResult | undefined;
        const answer: RetirementAnswer = result ? { requestId, ...result } : { requestId, status: 'failed', message };
        tellings.push(telling(pending.request.replyTo, retirementAnswerSignal, answer));
      }
    }
    await tellAll(tellings);
  }

  function record(requestId: string, kind: CapacityRecord['kind'], result: CapacityRecord['result']): void {
    completed[requestId] = { requestId, kind, at: new Date().toISOString(), result };
  }

  async function lookAtGroup(): Promise<GroupSnapshot> {
    const group = await describeGroup({ asgName });
    lastGroup = group;
    if (group.capacityRebalance && !warnedAboutCapacityRebalance) {
      warnedAboutCapacityRebalance = true;
      log.warn('Capacity Rebalancing is enabled on this group: AWS launches its own replacement as well as Spot Guard', {
        asgName,
      });
    }
    return group;
  }

  /** All increases waiting now become one SetDesiredCapacity, each granted in arrival order while MaxSize allows. */
  async function applyIncreases(batch: IncreaseCapacityRequest[]): Promise<void> {
    const group = await lookAtGroup();
    const room = Math.max(0, group.maxSize - group.desiredCapacity);
    const granted = batch.slice(0, room);
    if (granted.length > 0) {
      const desiredTarget = group.desiredCapacity + granted.length;
      const { requestedAt } = await setDesiredCapacity({ asgName, desiredCapacity: desiredTarget });
      appliedChanges++;
      const instancesBefore = group.instances.filter((i) => !isTerminatingState(i.lifecycleState)).map((i) => i.instanceId);
      for (const request of granted) {
        addWaiter(request, requestedAt, instancesBefore);
        record(request.requestId, 'increase', {
          status: 'granted',
          desiredBefore: group.desiredCapacity,
          desiredTarget,
          // A waiter is told its instance; the list is only for callers that poll on their own.
          instancesBefore: request.waiter ? [] : instancesBefore,
          appliedAt: requestedAt,
        });
      }
      log.info('desired capacity raised', { asgName, from: group.desiredCapacity, to: desiredTarget, requests: granted.length });
    }
    for (const request of batch.slice(granted.length)) {
      record(request.requestId, 'increase', { status: 'at-max-size', desired: group.desiredCapacity, maxSize: group.maxSize });
    }
  }

  async function applyRetire(request: RetireInstanceRequest, snapshot?: GroupSnapshot): Promise<void> {
    const { instanceId } = request;
    const earlier = retired[instanceId];
    if (earlier && earlier.how !== 'terminating') {
      // The books were settled for this instance already (perhaps by a request whose answer was lost): never twice.
      record(request.requestId, 'retire', { status: earlier.how, desiredAfter: earlier.desiredAfter });
      return;
    }
    const group = snapshot ?? (await lookAtGroup());
    const member = group.instances.find((i) => i.instanceId === instanceId);
    if (member && !isTerminatingState(member.lifecycleState)) {
      // Still running, so no earlier terminate call took effect: (re)try it.
      if (!request.terminate) {
        record(request.requestId, 'retire', { status: 'still-running' });
        return;
      }
      const decrement = request.decrement ?? true;
      const desiredAfter = decrement ? group.desiredCapacity - 1 : group.desiredCapacity;
      if (desiredAfter < group.minSize) {
        throw ApplicationFailure.nonRetryable(
          `terminating ${instanceId} with decrement would take "${asgName}" below its MinSize (${group.minSize})`,
          'BelowMinSize',
        );
      }
      // Recorded before the call: if the call takes effect but its answer is lost for good, a later request about
      // this instance finds it gone and must not take that for an AWS reclaim and decrement again.
      retired[instanceId] = { how: 'terminating', at: new Date().toISOString(), desiredAfter };
      try {
        // "Already terminating" on a retried attempt is our own first attempt, answer lost: it counts as ours.
        await terminateInstanceInGroup({ asgName, instanceId, decrementDesiredCapacity: decrement });
      } catch (error) {
        // AWS answered no (a 4xx): nothing happened, so nothing is pending. Any other failure leaves it unknown.
        if (isAwsRefusal(error)) delete retired[instanceId];
        throw error;
      }
      retired[instanceId] = { how: 'terminated', at: new Date().toISOString(), desiredAfter };
      appliedChanges++;
      record(request.requestId, 'retire', { status: 'terminated', desiredAfter });
      return;
    }
    if (earlier) {
      // Our unconfirmed terminate call did take effect: the decrement came with it.
      retired[instanceId] = { ...earlier, how: 'terminated' };
      record(request.requestId, 'retire', { status: 'terminated', desiredAfter: earlier.desiredAfter });
      return;
    }
    return settleAbsent(request, group);
  }

  async function settleAbsent(request: RetireInstanceRequest, group: GroupSnapshot): Promise<void> {
    const { instanceId } = request;
    if (request.ifAbsent === 'leave') {
      // Not ours to settle (an on-demand node removed another way): never a bare desired - 1.
      record(request.requestId, 'retire', { status: 'not-in-group' });
      return;
    }
    // AWS took the instance (spot interruption) and the group would replace it at the raised size: bring desired back
    // down by the one instance Spot Guard added for it.
    const desiredAfter = request.decrement === false ? group.desiredCapacity : Math.max(group.minSize, group.desiredCapacity - 1);
    retired[instanceId] = { how: 'reclaimed-by-aws', at: new Date().toISOString(), desiredAfter };
    if (desiredAfter !== group.desiredCapacity) {
      await setDesiredCapacity({ asgName, desiredCapacity: desiredAfter });
      appliedChanges++;
      group.desiredCapacity = desiredAfter; // the next look of a batch starts from here
    }
    record(request.requestId, 'retire', { status: 'reclaimed-by-aws', desiredAfter });
  }

  const shouldContinueAsNew = (): boolean =>
    workflowInfo().continueAsNewSuggested || workflowInfo().historyLength >= historyBound || updatesThisRun >= MAX_UPDATES_PER_RUN;

  /** The earliest moment something is due by the clock: a coalesced batch, a poll, a drain lease. */
  function nextWakeAt(): number | undefined {
    const times: number[] = [];
    const head = queue[0];
    if (head?.kind === 'increase') times.push(batchReadyAt(head));
    if (nextPollAt !== undefined) times.push(nextPollAt);
    for (const holder of drains.draining) times.push(Date.parse(holder.leaseUntil));
    return times.length > 0 ? Math.min(...times) : undefined;
  }

  const somethingToDo = (): boolean =>
    reanswer.length > 0 ||
    queue.some((p) => p.kind === 'retire') ||
    (queue[0] !== undefined && batchReadyAt(queue[0]) <= Date.now()) ||
    drainsToPromote() ||
    drainRequests.length > 0;

  for (;;) {
    const wakeAt = nextWakeAt();
    if (wakeAt === undefined) {
      await condition(() => queue.length > 0 || nextWakeAt() !== undefined || somethingToDo() || shouldContinueAsNew());
    } else if (wakeAt > Date.now() && !somethingToDo()) {
      // Also wakes when something new is due earlier than the timer (a request's window, a new waiter's poll).
      await condition(() => somethingToDo() || (nextWakeAt() ?? wakeAt) < wakeAt || (queue.length === 0 && shouldContinueAsNew()), wakeAt - Date.now());
    }
    if (reanswer.length > 0) await answerSignalled(reanswer.splice(0, reanswer.length));
    if (drainRequests.length > 0) await answerDrainRequests();
    if (drains.draining.length > 0 || drains.queued.length > 0) await moveDrainQueue();
    const pollDue = nextPollAt !== undefined && nextPollAt <= Date.now();
    const head = queue[0];
    const increasesReady = head?.kind === 'increase' && batchReadyAt(head) <= Date.now();
    // A due poll goes before retirements: in a wave they come one after another, each a look at the group and a
    // termination, and every node still waiting for its new instance would wait behind all of them.
    if (pollDue && !increasesReady && queue.some((p) => p.kind === 'retire') && patched('polls-before-retirements')) {
      await pollForWaiters();
      continue;
    }
    const batch = takeBatch(queue, Date.now());
    if (batch.length > 0) {
      for (const pending of batch) applying.add(pending.request.requestId);
      try {
        if (batch[0]?.kind === 'retire') await applyRetires(batch);
        else await applyIncreases(batch.map((p) => p.request as IncreaseCapacityRequest));
      } catch (error) {
        const message = `Auto Scaling group "${asgName}": ${rootMessage(error)}`;
        log.error('capacity change failed', { asgName, error: message });
        for (const pending of batch) failed[pending.request.requestId] = message;
      }
      applying.clear();
      await answerSignalled(batch);
      continue;
    }
    if (nextPollAt !== undefined && nextPollAt <= Date.now()) {
      await pollForWaiters();
      continue;
    }
    if (queue.length === 0 && shouldContinueAsNew()) {
      // Let every Update handler return its answer first; a request arriving meanwhile is served by this run.
      // Signalled requests not yet answered are served by this run too: they are not part of the carried state.
      const unanswered = (): boolean => queue.length > 0 || drainRequests.length > 0 || reanswer.length > 0;
      // Answers under way are not carried: the next run would not know to send them.
      await condition(() => (allHandlersFinished() && delivering.size === 0) || unanswered());
      if (unanswered()) continue;
      return continueAsNew<typeof capacityWorkflow>({
        asgName,
        historyBound: input.historyBound,
        carried: {
          completed: mostRecent(completed),
          retired: mostRecent(retired),
          appliedChanges,
          ...(waits.waiters.length > 0 ? { waits } : {}),
          ...(drains.draining.length > 0 || drains.queued.length > 0 ? { drains } : {}),
        },
      });
    }
  }
}

/** A batch of increases is applied once the coalescing window of its first request has passed. */
function batchReadyAt(pending: Pending): number {
  if (pending.kind !== 'increase') return pending.arrivedAt;
  return pending.arrivedAt + (pending.request.coalesceSeconds ?? 0) * 1000;
}

/** An activity failure that is AWS's definite refusal of the request (so it did not take effect). */
function isAwsRefusal(error: unknown): boolean {
  const cause = error instanceof ActivityFailure ? error.cause : undefined;
  return cause instanceof ApplicationFailure && cause.type === 'AwsRequestRejected';
}

/**
 * The newest entries of a record (insertion order), bounded in count and in size: the input of continue-as-new must
 * stay far below Temporal's payload limit even for groups of hundreds of instances.
 */
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

/**
 * Every increase at the head of the queue goes in one batch once its window has passed; a retirement is applied
 * alone, in its turn, and does not wait behind increases still gathering.
 */
function takeBatch(queue: Pending[], now: number): Pending[] {
  const head = queue[0];
  if (!head) return [];
  if (head.kind === 'retire') return queue.splice(0, 1);
  if (batchReadyAt(head) > now) {
    const retire = queue.findIndex((p) => p.kind === 'retire');
    return retire === -1 ? [] : queue.splice(retire, 1);
  }
  const end = queue.findIndex((p) => p.kind !== 'increase');
  return queue.splice(0, end === -1 ? queue.length : end);
}

function requireIncreaseOptions(request: IncreaseCapacityRequest): void {
  const { coalesceSeconds, waiter } = request;
  if (coalesceSeconds !== undefined && (typeof coalesceSeconds !== 'number' || !(coalesceSeconds >= 0 && coalesceSeconds <= 60))) {
    throw new Error(`coalesceSeconds ${String(coalesceSeconds)} must be a number of seconds from 0 to 60`);
  }
  if (waiter === undefined) return;
  if (typeof waiter.workflowId !== 'string' || waiter.workflowId.length === 0) {
    throw new Error(`waiter.workflowId "${String(waiter.workflowId)}" must name the workflow to tell`);
  }
  if (typeof waiter.waitSeconds !== 'number' || !(waiter.waitSeconds > 0 && waiter.waitSeconds <= MAX_WAIT_SECONDS)) {
    throw new Error(`waiter.waitSeconds ${String(waiter.waitSeconds)} must be more than 0 and at most ${MAX_WAIT_SECONDS}`);
  }
  if (typeof waiter.pollIntervalSeconds !== 'number' || !(waiter.pollIntervalSeconds >= 1 && waiter.pollIntervalSeconds <= 300)) {
    throw new Error(`waiter.pollIntervalSeconds ${String(waiter.pollIntervalSeconds)} must be from 1 to 300`);
  }
  if (waiter.drainSlot !== undefined) {
    try {
      requireDrainSlotRequest(waiter.drainSlot);
    } catch (error) {
      throw new Error(`waiter.drainSlot: ${rootMessage(error)}`);
    }
  }
}

function requireRetireRequest(request: RetireInstanceRequest, completed: Record<string, CapacityRecord>): void {
  requireRequestId(request, completed, 'retire');
  if (typeof request.instanceId !== 'string' || !/^i-[0-9a-f]+$/.test(request.instanceId)) {
    throw new Error(`instanceId "${request.instanceId}" is not an EC2 instance id`);
  }
  if (typeof request.terminate !== 'boolean') throw new Error('terminate must be true or false');
}

function requireDrainSlotRequest(request: DrainSlotRequest): void {
  if (typeof request !== 'object' || request === null) throw new Error(`drain slot request ${JSON.stringify(request)} is not an object`);
  for (const field of ['requestId', 'workflowId', 'instanceId', 'nodeName'] as const) {
    if (typeof request?.[field] !== 'string' || request[field].length === 0) {
      throw new Error(`${field} "${String(request?.[field])}" must be a non-empty string`);
    }
  }
  const budget = request.budget as { nodes?: unknown; percent?: unknown } | undefined;
  const nodesOk = typeof budget?.nodes === 'number' && Number.isInteger(budget.nodes) && budget.nodes >= 1;
  const percentOk = typeof budget?.percent === 'number' && budget.percent > 0 && budget.percent <= 100;
  if (!nodesOk && !percentOk) {
    throw new Error(`budget ${JSON.stringify(request.budget)} must be { nodes: whole number >= 1 } or { percent: more than 0, at most 100 }`);
  }
  if (typeof request.leaseSeconds !== 'number' || !(request.leaseSeconds > 0)) {
    throw new Error(`leaseSeconds ${String(request.leaseSeconds)} must be a positive number of seconds`);
  }
}

function requireRequestId(
  request: { requestId?: unknown } | undefined,
  completed: Record<string, CapacityRecord>,
  kind: CapacityRecord['kind'],
): void {
  if (typeof request?.requestId !== 'string' || request.requestId.length === 0 || request.requestId.length > 400) {
    throw new Error(`requestId "${String(request?.requestId)}" must be a non-empty string of at most 400 characters`);
  }
  const earlier = completed[request.requestId];
  if (earlier && earlier.kind !== kind) {
    throw new Error(`requestId "${request.requestId}" was already used for a ${earlier.kind} request`);
  }
}
