// The monitor's current details, as the Temporal UI shows them: what it waits for, from its state and the workflow
// clock only (it outlives a continue-as-new, where the fixed summary of the first start is not kept, so it names the
// pair too).
import type { MonitorPhase, MonitorState } from './api.js';

export interface MonitorShown {
  spotAsgName: string;
  onDemandAsgName: string;
  state: MonitorState;
  phase: MonitorPhase;
  /** When the healthy streak reaches the stability window (undefined: no streak). */
  stableAt?: number;
  stabilityWindowSeconds?: number;
  checkIntervalSeconds?: number;
  /** The workflow's clock (Date.now() inside the workflow: deterministic). */
  now: number;
}

export function monitorDetails(shown: MonitorShown): string {
  const { state } = shown;
  const tracked = state.events.filter((e) => e.state === 'tracked').length;
  return [`${shown.spotAsgName} ↔ ${shown.onDemandAsgName}: ${phaseLine(shown)}`, `${tracked} on-demand fallback(s) to remove, ${state.scaleDowns} removed so far`].join('\n');
}

function phaseLine(shown: MonitorShown): string {
  const { state, stableAt, stabilityWindowSeconds: window } = shown;
  const every = shown.checkIntervalSeconds === undefined ? '' : ` (checked every ${shown.checkIntervalSeconds} s)`;
  switch (shown.phase) {
    case 'paused':
      return `paused: ${state.pausedReason ?? 'by an operator'}`;
    case 'scaling-down':
      return `removing on-demand ${state.inFlight?.instanceId ?? '?'}${state.inFlight?.nodeName ? ` (node ${state.inFlight.nodeName})` : ''}, step ${state.inFlight?.step ?? '?'}`;
    case 'waiting-for-health':
      return `waiting for spot to be healthy${every}${state.lastCheck ? `: ${state.lastCheck.reasons.join('; ') || 'not checked yet'}` : ''}`;
    case 'waiting-for-stability': {
      if (stableAt === undefined || window === undefined) return `spot healthy, waiting for the stability window${every}`;
      const healthyFor = Math.max(0, Math.round(window - (stableAt - shown.now) / 1000));
      return `spot healthy for ${Math.min(healthyFor, window)} s of the ${window} s stability window${every}`;
    }
    case 'blocked':
      return `scale-down blocked: ${state.lastSafety?.reason ?? 'moving the pods is not safe'}`;
    case 'idle':
      return 'spot stable: nothing to remove now';
  }
}
