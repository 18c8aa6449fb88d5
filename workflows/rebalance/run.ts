// One rebalance run's state, shared by its steps: the status an operator queries, the settings it acts on, and what
// arrived by signal (notices, an operator's drainNow, the capacity workflow's answers).
import { log, setCurrentDetails, setHandler, type SignalDefinition, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import {
  type CapacityAnswer,
  capacityAnswerSignal,
  type DrainSlotAnswer,
  drainSlotAnswerSignal,
  LATE_SUFFIX,
  type ReplacementAnswer,
  replacementAnswerSignal,
  type RetirementAnswer,
  retirementAnswerSignal,
} from '../capacity/api.js';
import { searchAttributes } from '../shared/search-attributes.js';
import type { RunSettings } from '../shared/settings.js';
import {
  type CapacityPhase,
  drainNowSignal,
  type InstanceFate,
  interruptionNoticeSignal,
  type RebalanceInput,
  type RebalancePhase,
  type RebalanceResult,
  type RebalanceStatus,
  rebalanceStatusQuery,
} from './api.js';
import { rebalanceDetails } from './details.js';

export const isoNow = (): string => new Date().toISOString();

export class RebalanceRun {
  readonly workflowId = workflowInfo().workflowId;
  readonly instanceId: string;
  readonly nodeName: string;
  /** Surplus mode: the warned instance whose book this instance carries (see RebalanceInput). */
  readonly surplusFor: string | undefined;
  readonly status: RebalanceStatus;
  /** Set once verify has found the instance's pair; nothing acts on a group before. */
  settings!: RunSettings;
  /** The capacity workflows' answers, by request id; the first one counts (a resent answer changes nothing). */
  readonly capacityAnswers = answersOf<CapacityAnswer>(capacityAnswerSignal);
  readonly replacementAnswers = answersOf<ReplacementAnswer>(replacementAnswerSignal);
  readonly retirementAnswers = answersOf<RetirementAnswer>(retirementAnswerSignal);
  /** The drain slot's request id; a drain tried again after an incomplete one asks under a new one. */
  drainSlotRequestId = `${this.workflowId}/drain`;
  drainSlotAnswer: DrainSlotAnswer | undefined;
  /** The spot group's answer about the replacement carries the drain slot: nothing more to ask once it came. */
  drainSlotAskedWithReplacement = false;
  /** The replacement-capacity branch has ended (it runs beside the taint and drain). */
  capacitySettled = false;

  constructor(input: RebalanceInput) {
    this.instanceId = input.instanceId;
    this.nodeName = input.nodeName;
    this.surplusFor = input.surplusFor;
    const startedAt = isoNow();
    this.status = {
      instanceId: input.instanceId,
      nodeName: input.nodeName,
      phase: 'verifying',
      capacityPhase: 'not-started',
      startedAt,
      phaseChangedAt: startedAt,
      spot: { asgName: '' },
      notes: [],
    };
    this.listen();
    this.showDetails();
  }

  private listen(): void {
    setHandler(rebalanceStatusQuery, () => this.status);
    setHandler(interruptionNoticeSignal, (notice) => {
      if (this.status.interruption) return; // IMDS repeats the notice every poll; the first one counts
      this.status.interruption = { action: String(notice?.action ?? 'unknown'), time: String(notice?.time ?? 'unknown'), receivedAt: isoNow() };
      log.warn('spot interruption notice: skipping the wait, draining now', { instanceId: this.instanceId, action: notice?.action, time: notice?.time });
      this.showDetails();
    });
    setHandler(drainNowSignal, (request) => {
      if (this.status.drainRequest) return;
      this.status.drainRequest = { reason: String(request?.reason ?? 'no reason given'), receivedAt: isoNow() };
      log.info('operator asked to drain now', { instanceId: this.instanceId, reason: this.status.drainRequest.reason });
      this.showDetails();
    });
    setHandler(drainSlotAnswerSignal, (answer) => this.takeDrainSlotAnswer(answer));
  }

  /** A drain tried again (after an incomplete one) asks the disruption budget afresh, under its own request id. */
  startDrainAttempt(attempt: number): void {
    this.drainSlotRequestId = `${this.workflowId}/drain/${attempt}`;
    this.drainSlotAnswer = undefined;
    this.drainSlotAskedWithReplacement = false;
  }

  /** An interruption notice or an operator's drainNow: drain at once, whatever else is going on. */
  drainRequested(): boolean {
    return this.status.interruption !== undefined || this.status.drainRequest !== undefined;
  }

  takeDrainSlotAnswer(answer: DrainSlotAnswer | undefined): void {
    if (answer?.requestId !== this.drainSlotRequestId) {
      log.warn('ignoring a drain slot answer to another request', { answer, expected: this.drainSlotRequestId });
      return;
    }
    if (this.drainSlotAnswer?.status === 'granted') return;
    this.drainSlotAnswer = answer;
  }

  drainSlotGranted(): boolean {
    return this.drainSlotAnswer?.status === 'granted';
  }

  /** A replacement that came after its wait ended (spot first), told by its capacity workflow under `<id>/late`. */
  lateReplacement(): { kind: 'spot' | 'on-demand'; instanceId: string } | undefined {
    for (const kind of ['spot', 'on-demand'] as const) {
      const answer = this.replacementAnswers[`${this.workflowId}/${kind}${LATE_SUFFIX}`];
      if (answer?.status === 'in-service') return { kind, instanceId: answer.instanceId };
    }
    return undefined;
  }

  /** The spot group has answered the +1 (raised, or not), or the capacity branch has ended. */
  spotAnswered(): boolean {
    return this.status.spot.desiredTarget !== undefined || this.status.spot.failure !== undefined || this.capacitySettled;
  }

  enterPhase(phase: RebalancePhase): void {
    this.status.phase = phase;
    this.status.phaseChangedAt = isoNow();
    upsertSearchAttributes([{ key: searchAttributes.phase, value: phase }]);
    this.showDetails();
  }

  enterCapacityPhase(phase: CapacityPhase): void {
    this.status.capacityPhase = phase;
    this.showDetails();
  }

  note(text: string): void {
    this.status.notes.push(`${isoNow()} ${text}`);
    log.info(text, { instanceId: this.instanceId });
    this.showDetails();
  }

  /**
   * What the run waits for now, as the Temporal UI's current details: refreshed at every phase change and note. Held by
   * the worker and read by a query, never recorded: a replay sets the same text again.
   */
  showDetails(): void {
    setCurrentDetails(rebalanceDetails(this.status, this.settings));
  }

  result(drained: boolean, fate: InstanceFate): RebalanceResult {
    return {
      instanceId: this.instanceId,
      nodeName: this.nodeName,
      replacement: this.status.replacement ?? 'capacity-unavailable',
      replacementInstanceId: this.status.replacementInstanceId,
      tainted: this.status.taintedAt !== undefined,
      drained,
      instanceFate: fate,
      notes: this.status.notes,
    };
  }
}

/** The answers arriving on a signal, by request id; the first one counts. A malformed one is ignored. */
function answersOf<A extends { requestId: string }>(signal: SignalDefinition<[A]>): Record<string, A> {
  const answers: Record<string, A> = {};
  setHandler(signal, (answer) => {
    if (typeof answer?.requestId !== 'string') {
      log.warn(`ignoring a ${signal.name} without a request id`, { answer });
      return;
    }
    answers[answer.requestId] ??= answer;
  });
  return answers;
}
