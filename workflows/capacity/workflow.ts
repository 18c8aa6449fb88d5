// The capacity workflow: one long-lived entity per Auto Scaling group through which every desired-capacity change of
// that group goes. Requests arrive as signals and are applied one batch at a time by this single loop, so two nodes
// warned at the same moment yield +2 (never a lost read-modify-write), and each change is an absolute target recorded
// in history, so a retried activity re-applies the same number instead of adding again. It is also the group's only
// poller while workflows wait for new instances, and it keeps the group's disruption budget.
import { allHandlersFinished, condition, continueAsNew, log, setCurrentDetails, setHandler, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import { failureType, rootMessage } from '../shared/failures.js';
import { searchAttributes } from '../shared/search-attributes.js';
import {
  capacityStatusQuery,
  type CapacityWorkflowInput,
  type DrainSlotRequest,
  drainSlotRequestSignal,
  increaseCapacityRequestSignal,
  type IncreaseCapacityRequest,
  releaseDrainSlotSignal,
  type RetireInstanceRequest,
  retireInstanceRequestSignal,
  validateDrainSlotRequest,
  validateIncreaseRequest,
  validateReleaseRequest,
  validateRetireRequest,
} from './api.js';
import { capacityDetails } from './details.js';
import { answerDrainRequests, moveDrainQueue } from './drain-slots.js';
import { pollGroupForWaiters } from './group-poll.js';
import { GroupState } from './group-state.js';
import { applyIncreases } from './increases.js';
import { showQueues } from './metrics.js';
import type { Pending } from './request-ledger.js';
import { applyRetirements } from './retirements.js';

/** Continue-as-new well before Temporal's limits even if the server has not suggested it yet. */
const DEFAULT_HISTORY_BOUND = 10_000;

export async function capacityWorkflow(input: CapacityWorkflowInput): Promise<never> {
  const state = new GroupState(input);
  if (workflowInfo().typedSearchAttributes.get(searchAttributes.asg) !== input.asgName) {
    upsertSearchAttributes([{ key: searchAttributes.asg, value: input.asgName }]);
  }
  handleRequests(state);
  const historyBound = input.historyBound ?? DEFAULT_HISTORY_BOUND;
  const shouldContinueAsNew = (): boolean => workflowInfo().continueAsNewSuggested || workflowInfo().historyLength >= historyBound;
  for (;;) {
    // What it waits for, in the UI's current details (held by the worker, not recorded in history).
    setCurrentDetails(capacityDetails(state.status()));
    showQueues(state);
    await waitForWork(state, shouldContinueAsNew);
    if (await doDueWork(state)) continue;
    if (state.ledger.queue.length === 0 && shouldContinueAsNew() && (await readyToContinueAsNew(state))) {
      return continueAsNew<typeof capacityWorkflow>({ asgName: input.asgName, historyBound: input.historyBound, carried: state.carried() });
    }
  }
}

/** Every request has one way in: a signal, validated here as by the activity that sent it; a bad one changes nothing. */
function handleRequests(state: GroupState): void {
  const { asgName, ledger, drains, waiters } = state;
  /** The handler of one request signal: its validation first; a request that fails it is logged and ignored. */
  function guarded<R>(what: string, validate: (request: R) => void, accept: (request: R) => void): (request: R) => void {
    return (request) => {
      try {
        validate(request);
      } catch (error) {
        log.error(`malformed ${what} ignored`, { asgName, error: rootMessage(error) });
        return;
      }
      accept(request);
    };
  }
  /**
   * The handler of a request that goes into the ledger: its validation, then its id, which must not have been used
   * for another kind of request; `pending` wraps the request for the queue.
   */
  function intoLedger<R>(what: string, validate: (request: R) => void, pending: (request: R, arrivedAt: number) => Pending): (request: R) => void {
    const check = (request: R): void => {
      validate(request);
      const refusal = ledger.refusalOf(pending(request, 0));
      if (refusal) throw new Error(refusal);
    };
    return guarded(what, check, (request) => ledger.take(pending(request, Date.now())));
  }
  /** The drain slot a waiting (or not yet applied) increase asked for with its replacement: taken care of on its own. */
  function dropReplacementsDrainSlot(requestId: string): void {
    waiters.dropDrainSlot(requestId);
    ledger.dropDrainSlot(requestId);
  }
  setHandler(capacityStatusQuery, () => state.status());
  setHandler(
    increaseCapacityRequestSignal,
    intoLedger('increase request', validateIncreaseRequest, (request: IncreaseCapacityRequest, arrivedAt) => ({ kind: 'increase', request, arrivedAt })),
  );
  setHandler(
    retireInstanceRequestSignal,
    intoLedger('retirement request', validateRetireRequest, (request: RetireInstanceRequest, arrivedAt) => ({ kind: 'retire', request, arrivedAt })),
  );
  setHandler(
    drainSlotRequestSignal,
    guarded<DrainSlotRequest>('drain slot request', validateDrainSlotRequest, (request) => {
      // Asked for on its own (an interruption notice drains at once): not again when its instance is InService, where
      // it would take a slot nobody gives back.
      dropReplacementsDrainSlot(request.requestId);
      drains.incoming.push(request);
    }),
  );
  setHandler(
    releaseDrainSlotSignal,
    guarded('drain slot release', validateReleaseRequest, (request) => {
      dropReplacementsDrainSlot(request.requestId);
      drains.release(request.requestId);
    }),
  );
}

/** The earliest moment something is due by the clock: a coalesced batch, a poll, a drain lease. */
function nextWakeAt(state: GroupState): number | undefined {
  const times = [state.ledger.headReadyAt(), state.waiters.nextPollAt, state.booksLookAt(), ...state.drains.leaseEnds()].filter((t): t is number => t !== undefined);
  return times.length > 0 ? Math.min(...times) : undefined;
}

function somethingToDo(state: GroupState): boolean {
  return state.ledger.hasWorkDue(Date.now()) || state.drains.canPromote(state.groupSize()) || state.drains.incoming.length > 0;
}

async function waitForWork(state: GroupState, shouldContinueAsNew: () => boolean): Promise<void> {
  const wakeAt = nextWakeAt(state);
  if (wakeAt === undefined) {
    await condition(() => state.ledger.queue.length > 0 || nextWakeAt(state) !== undefined || somethingToDo(state) || shouldContinueAsNew());
  } else if (wakeAt > Date.now() && !somethingToDo(state)) {
    // Also wakes when something new is due earlier than the timer (a request's window, a new waiter's poll).
    const earlier = (): boolean => (nextWakeAt(state) ?? wakeAt) < wakeAt;
    await condition(() => somethingToDo(state) || earlier() || (state.ledger.queue.length === 0 && shouldContinueAsNew()), wakeAt - Date.now());
  }
}

/** One turn of the loop: answers, the disruption budget, then a due poll or the next batch. True if it did a batch or a poll. */
async function doDueWork(state: GroupState): Promise<boolean> {
  const { ledger, waiters } = state;
  if (ledger.toAnswerAgain.length > 0) await state.outbox.send(ledger.answersFor(ledger.toAnswerAgain.splice(0)));
  if (state.drains.incoming.length > 0) await answerDrainRequests(state);
  if (state.drains.busy()) await moveDrainQueue(state);
  // A due poll goes before retirements: in a wave they come one after another, each a look at the group and a
  // termination, and every node still waiting for its new instance would wait behind all of them.
  if (waiters.pollDue(Date.now()) && !ledger.increasesReady(Date.now()) && ledger.hasRetirement()) {
    await pollGroupForWaiters(state);
    return true;
  }
  const batch = ledger.takeBatch(Date.now());
  if (batch.length > 0) {
    await applyBatch(state, batch);
    return true;
  }
  if (waiters.pollDue(Date.now())) {
    await pollGroupForWaiters(state);
    return true;
  }
  if ((state.booksLookAt() ?? Infinity) <= Date.now()) {
    await lookForDepartures(state);
    return true;
  }
  return false;
}

/** The books look: warned instances that left the group since the last look are settled (in lookAtGroup). */
async function lookForDepartures(state: GroupState): Promise<void> {
  try {
    await state.lookAtGroup();
  } catch (error) {
    log.warn('could not look at the group for departures this time', { asgName: state.asgName, error: rootMessage(error) });
  }
}

async function applyBatch(state: GroupState, batch: Pending[]): Promise<void> {
  let failure: string | undefined;
  let type: string | undefined;
  try {
    if (batch[0]?.kind === 'retire') await applyRetirements(state, batch);
    else await applyIncreases(state, batch.map((p) => p.request as IncreaseCapacityRequest));
  } catch (error) {
    failure = `Auto Scaling group "${state.asgName}": ${rootMessage(error)}`;
    type = failureType(error);
    log.error('capacity change failed', { asgName: state.asgName, error: failure });
  }
  state.ledger.finish(batch, failure, type);
  await state.outbox.send(state.ledger.answersFor(batch));
}

/**
 * Continue-as-new only once every answer under way is delivered (the next run would not know to send them); requests
 * arriving meanwhile are served by this run, as they are not part of the carried state.
 */
async function readyToContinueAsNew(state: GroupState): Promise<boolean> {
  const unanswered = (): boolean => state.ledger.queue.length > 0 || state.drains.incoming.length > 0 || state.ledger.toAnswerAgain.length > 0;
  await condition(() => (allHandlersFinished() && state.outbox.idle) || unanswered());
  return !unanswered();
}
