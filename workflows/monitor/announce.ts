// The monitor's announcement: a fallback removed, the pair back on spot (an Event on the fallback's node, the
// fallback's cost in instance-seconds, the webhook). Keyed by the monitor, the instance and the attempt that removed it.
import { announce } from '../shared/announce.js';
import type { FallbackEvent, ScaleDownInFlight } from './api.js';
import { isoNow, type MonitorRun } from './run.js';

export function announceReverted(run: MonitorRun, candidate: ScaleDownInFlight, event: FallbackEvent | undefined): Promise<void> {
  const { instanceId, nodeName } = candidate;
  const launchedAt = event ? Date.parse(event.launchedAt) : NaN;
  const seconds = Number.isNaN(launchedAt) ? undefined : Math.max(0, Math.round((Date.now() - launchedAt) / 1000));
  return announce({
    key: `${run.workflowId}/reverted-to-spot/${instanceId}`,
    step: 'reverted-to-spot',
    workflowId: run.workflowId,
    at: isoNow(),
    ...(nodeName ? { nodeName } : {}),
    instanceId,
    group: run.onDemandAsgName,
    message: `on-demand fallback ${instanceId}${nodeName ? ` (${nodeName})` : ''} removed after ${seconds ?? '?'} s: "${run.spotAsgName}" is healthy on spot again`,
    facts: { kind: 'on-demand', ...(seconds === undefined ? {} : { seconds }), ...(event ? { reason: `stood in for ${event.warnedInstanceId} (${event.warnedNodeName})` } : {}) },
  });
}
