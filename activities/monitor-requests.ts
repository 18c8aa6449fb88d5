// Starting the revert-to-spot monitor of a spot/on-demand pair and telling it about on-demand fallbacks. The monitor
// has a fixed workflow id per pair, so starting it again or reporting the same fallback twice changes nothing.
import type { Client } from '@temporalio/client';
import { type FallbackReport, fallbackLaunchedSignal, type MonitorInput } from '../workflows/monitor/api.js';
import { monitorWorkflowId } from '../workflows/shared/ids.js';
import { searchAttributes } from '../workflows/shared/search-attributes.js';
import { workflowDetails, workflowSummaries } from '../workflows/shared/user-metadata.js';
import type { monitorWorkflow } from '../workflows/monitor/workflow.js';
import { requireGroupName } from './validation.js';

function monitorStartOptions(taskQueue: string, spotAsgName: string, onDemandAsgName: string) {
  return {
    workflowId: monitorWorkflowId(spotAsgName, onDemandAsgName),
    taskQueue,
    args: [{ spotAsgName, onDemandAsgName }] as [MonitorInput],
    workflowIdConflictPolicy: 'USE_EXISTING' as const,
    typedSearchAttributes: [{ key: searchAttributes.asg, value: spotAsgName }],
    staticSummary: workflowSummaries.monitor(spotAsgName, onDemandAsgName),
    staticDetails: workflowDetails.monitor(spotAsgName, onDemandAsgName),
  };
}

/** Starts the pair's monitor unless it runs already; returns its workflow id. */
export async function ensureMonitor(client: Client, taskQueue: string, spotAsgName: string, onDemandAsgName: string): Promise<string> {
  const handle = await client.workflow.start<typeof monitorWorkflow>('monitorWorkflow', monitorStartOptions(taskQueue, spotAsgName, onDemandAsgName));
  return handle.workflowId;
}

export function createMonitorRequestActivities(client: Client, taskQueue: string) {
  return {
    /** Records an on-demand fallback with the pair's monitor (starting it if needed), so it can be removed later. */
    async reportFallbackToMonitor(input: { spotAsgName: string; onDemandAsgName: string; report: FallbackReport }): Promise<void> {
      requireGroupName(input.spotAsgName);
      requireGroupName(input.onDemandAsgName);
      await client.workflow.signalWithStart<typeof monitorWorkflow, [FallbackReport]>('monitorWorkflow', {
        ...monitorStartOptions(taskQueue, input.spotAsgName, input.onDemandAsgName),
        signal: fallbackLaunchedSignal,
        signalArgs: [input.report],
      });
    },
  };
}

export type MonitorRequestActivities = ReturnType<typeof createMonitorRequestActivities>;
