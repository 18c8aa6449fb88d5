// Where the time from a replacement being InService to its warned node being tainted goes, read from the rebalance
// workflows' histories after a run: the capacity workflow noticing the instance (its poll), delivering the answer
// (sendAnswers), the rebalance workflow's task starting awaitNodeReady, that activity waiting in the task queue, the
// node turning Ready, and the task that taints the node.
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { tsToMs } from '@temporalio/common/lib/time.js';
import { type ReplacementAnswer, replacementAnswerSignal } from '../workflows/definitions.js';
import { type Spread, spread } from './stats.js';

export interface StageLags {
  /** InService in AWS → the capacity workflow's poll that saw it. */
  noticedByPoll: Spread;
  /** That poll → the answer signal in the rebalance workflow's history. */
  answerDelivered: Spread;
  /** The answer → awaitNodeReady scheduled (a rebalance workflow task). */
  nodeReadyWaitScheduled: Spread;
  /** Scheduled → started: time in the activity task queue. */
  nodeReadyWaitQueued: Spread;
  /** Started → completed: the node turning Ready as seen by the shared node list. */
  nodeReadyWaitRunning: Spread;
  /** Completed → taintedAt: the workflow task that runs the taint. */
  taintStep: Spread;
  measured: number;
  /** Every workflow task of these workflows: scheduled → started (waiting for the worker) and started → completed. */
  workflowTaskQueued: Spread;
  workflowTaskRunning: Spread;
}

interface Stages {
  workflowTasks: { queued: number; running: number }[];
  noticedByPoll: number;
  answerDelivered: number;
  nodeReadyWaitScheduled: number;
  nodeReadyWaitQueued: number;
  nodeReadyWaitRunning: number;
  taintStep: number;
}

/** The stages of one workflow, in seconds, or undefined when its history lacks one of them. */
export async function stagesOf(client: Client, workflowId: string, inServiceAt: Record<string, number>, taintedAt: string | undefined): Promise<Stages | undefined> {
  if (!taintedAt) return undefined;
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  let answer: { at: number; delivered: number; instanceId: string } | undefined;
  let scheduled: { id: string; at: number } | undefined;
  let started: number | undefined;
  let completed: number | undefined;
  const workflowTasks: Stages['workflowTasks'] = [];
  const taskEventAt = new Map<string, number>();
  for (const event of history.events ?? []) {
    const at = tsToMs(event.eventTime) / 1000;
    if (event.workflowTaskScheduledEventAttributes) taskEventAt.set(String(event.eventId), at);
    const taskStarted = event.workflowTaskStartedEventAttributes;
    if (taskStarted) taskEventAt.set(String(event.eventId), at);
    const taskCompleted = event.workflowTaskCompletedEventAttributes;
    if (taskCompleted) {
      const scheduledAt = taskEventAt.get(String(taskCompleted.scheduledEventId));
      const startedAt = taskEventAt.get(String(taskCompleted.startedEventId));
      if (scheduledAt !== undefined && startedAt !== undefined) workflowTasks.push({ queued: startedAt - scheduledAt, running: at - startedAt });
    }
    const signal = event.workflowExecutionSignaledEventAttributes;
    if (!answer && signal?.signalName === replacementAnswerSignal.name) {
      const payload = signal.input?.payloads?.[0];
      const value = payload ? defaultPayloadConverter.fromPayload<ReplacementAnswer>(payload) : undefined;
      if (value?.status === 'in-service') answer = { at: Date.parse(value.at) / 1000, delivered: at, instanceId: value.instanceId };
    }
    const schedule = event.activityTaskScheduledEventAttributes;
    if (answer && !scheduled && schedule?.activityType?.name === 'awaitNodeReady') scheduled = { id: String(event.eventId), at };
    if (scheduled && String(event.activityTaskStartedEventAttributes?.scheduledEventId) === scheduled.id) started = at;
    if (scheduled && String(event.activityTaskCompletedEventAttributes?.scheduledEventId) === scheduled.id) completed = at;
  }
  const inService = answer ? inServiceAt[answer.instanceId] : undefined;
  if (!answer || !scheduled || started === undefined || completed === undefined || inService === undefined) return undefined;
  return {
    workflowTasks,
    noticedByPoll: answer.at - inService,
    answerDelivered: answer.delivered - answer.at,
    nodeReadyWaitScheduled: scheduled.at - answer.delivered,
    nodeReadyWaitQueued: started - scheduled.at,
    nodeReadyWaitRunning: completed - started,
    taintStep: Date.parse(taintedAt) / 1000 - completed,
  };
}

/** p50 and max of every stage over the workflows whose history has all of them. */
export function summarize(all: (Stages | undefined)[]): StageLags {
  const measured = all.filter((s): s is Stages => s !== undefined);
  const of = (key: Exclude<keyof Stages, 'workflowTasks'>): Spread => spread(measured.map((s) => s[key]));
  const tasks = measured.flatMap((s) => s.workflowTasks);
  return {
    noticedByPoll: of('noticedByPoll'),
    answerDelivered: of('answerDelivered'),
    nodeReadyWaitScheduled: of('nodeReadyWaitScheduled'),
    nodeReadyWaitQueued: of('nodeReadyWaitQueued'),
    nodeReadyWaitRunning: of('nodeReadyWaitRunning'),
    taintStep: of('taintStep'),
    measured: measured.length,
    workflowTaskQueued: spread(tasks.map((t) => t.queued)),
    workflowTaskRunning: spread(tasks.map((t) => t.running)),
  };
}
