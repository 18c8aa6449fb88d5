// The monitor's state and what arrived by signal, shared by its steps; the phase an operator sees.
import { log, setCurrentDetails, setHandler, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import { type RetirementAnswer, retirementAnswerSignal } from '../capacity/api.js';
import type { SpotGuardActivities } from '../shared/activity-types.js';
import { isInstanceId } from '../shared/ids.js';
import { searchAttributes } from '../shared/search-attributes.js';
import type { FlowSettings } from '../shared/settings.js';
import { scaleDownStepsFor } from './activities.js';
import {
  checkNowSignal,
  fallbackLaunchedSignal,
  type MonitorInput,
  type MonitorPhase,
  type MonitorState,
  monitorStatusQuery,
  pauseMonitorSignal,
  resumeMonitorSignal,
} from './api.js';
import { monitorDetails } from './details.js';
import { stableAt } from './stability.js';

const MAX_NOTES = 50;

export const isoNow = (): string => new Date().toISOString();

export class MonitorRun {
  readonly workflowId = workflowInfo().workflowId;
  readonly spotAsgName: string;
  readonly onDemandAsgName: string;
  readonly state: MonitorState;
  settings!: FlowSettings;
  steps!: SpotGuardActivities;
  checkRequested = false;
  /** The spot group's instances at the latest health check (undefined: it could not look); not carried. */
  spotMembers: ReadonlySet<string> | undefined;
  /** Answers of the on-demand group's capacity workflow to this monitor's terminations, by request id. */
  readonly retirementAnswers: Record<string, RetirementAnswer> = {};
  private publishedPhase: MonitorPhase | undefined;

  constructor(input: MonitorInput) {
    this.spotAsgName = input.spotAsgName;
    this.onDemandAsgName = input.onDemandAsgName;
    this.state = input.carried ?? { events: [], paused: false, scaleDowns: 0, notes: [] };
    this.listen();
  }

  useSettings(settings: FlowSettings): void {
    this.settings = settings;
    this.steps = scaleDownStepsFor(settings);
  }

  note(text: string): void {
    this.state.notes.push(`${isoNow()} ${text}`);
    if (this.state.notes.length > MAX_NOTES) this.state.notes.splice(0, this.state.notes.length - MAX_NOTES);
    log.info(text, { spotAsgName: this.spotAsgName, onDemandAsgName: this.onDemandAsgName });
    this.showDetails();
  }

  /** When the healthy streak will have lasted the stability window (undefined: no streak, or no settings yet). */
  stableAt(): number | undefined {
    return this.settings ? stableAt(this.state, this.settings.monitor.stabilityWindowSeconds) : undefined;
  }

  phase(): MonitorPhase {
    const { state } = this;
    if (state.paused) return 'paused';
    if (state.inFlight) return 'scaling-down';
    if (!state.lastCheck?.healthy) return 'waiting-for-health';
    const stable = this.stableAt();
    if (stable === undefined || Date.now() < stable) return 'waiting-for-stability';
    if (state.lastSafety && !state.lastSafety.safe) return 'blocked';
    return 'idle';
  }

  /** The phase as the SpotGuardPhase search attribute, written only when it changes. */
  publishPhase(): void {
    this.showDetails();
    const next = this.phase();
    if (next === this.publishedPhase) return;
    this.publishedPhase = next;
    upsertSearchAttributes([{ key: searchAttributes.phase, value: next }]);
  }

  /** What it waits for, as the Temporal UI's current details (held by the worker, never recorded in history). */
  showDetails(): void {
    const { settings } = this;
    setCurrentDetails(
      monitorDetails({
        spotAsgName: this.spotAsgName,
        onDemandAsgName: this.onDemandAsgName,
        state: this.state,
        phase: this.phase(),
        stableAt: this.stableAt(),
        stabilityWindowSeconds: settings?.monitor.stabilityWindowSeconds,
        checkIntervalSeconds: settings?.monitor.checkIntervalSeconds,
        now: Date.now(),
      }),
    );
  }

  private listen(): void {
    const { state } = this;
    setHandler(monitorStatusQuery, () => {
      const stable = this.stableAt();
      return { ...state, spotAsgName: this.spotAsgName, onDemandAsgName: this.onDemandAsgName, stableAt: stable === undefined ? undefined : new Date(stable).toISOString(), phase: this.phase() };
    });
    setHandler(fallbackLaunchedSignal, (report) => {
      if (!isInstanceId(report?.onDemandInstanceId)) {
        log.warn('ignoring a fallback report without a valid on-demand instance id', { report });
        return;
      }
      if (state.events.some((e) => e.onDemandInstanceId === report.onDemandInstanceId)) return; // reported twice
      state.events.push({ ...report, state: 'tracked' });
      this.note(`tracking on-demand fallback ${report.onDemandInstanceId} (launched for ${report.warnedInstanceId} on ${report.warnedNodeName})`);
    });
    setHandler(pauseMonitorSignal, (request) => {
      state.paused = true;
      state.pausedReason = request?.reason || 'paused by an operator';
      this.note(`paused: ${state.pausedReason}`);
    });
    setHandler(resumeMonitorSignal, () => {
      if (!state.paused) return;
      state.paused = false;
      state.pausedReason = undefined;
      this.checkRequested = true;
      this.note('resumed');
    });
    setHandler(checkNowSignal, () => {
      this.checkRequested = true;
    });
    setHandler(retirementAnswerSignal, (answer) => {
      if (typeof answer?.requestId !== 'string') {
        log.warn('ignoring a retirement answer without a request id', { answer });
        return;
      }
      this.retirementAnswers[answer.requestId] ??= answer;
    });
  }
}
