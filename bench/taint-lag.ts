// Where the time from a replacement being InService to its warned node being tainted goes, read from the rebalance
// workflows' histories after a run: the capacity workflow noticing the instance (its poll), delivering the answer
// (sendAnswers), the answer waiting for a rebalance workflow task to start, and from that task's start to the taint
// (the node-Ready look, which is a local activity in that task unless the node was not Ready yet, and the taint).
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { tsToMs } from '@temporalio/common/lib/time.js';
import proto from '@temporalio/proto';
import { type ReplacementAnswer, replacementAnswerSignal } from '../workflows/capacity/api.js';
import { type KeysOf, type Spread, spread } from './stats.js';

export interface StageLags {
  /** InService in AWS → the capacity workflow's poll that saw it. */
  noticedByPoll: Spread;
  /** That poll → the answer signal in the rebalance workflow's history. */
  answerDelivered: Spread;
  /** The answer → the start of the rebalance workflow task that takes it: waiting for the worker. */
  answerTaskQueued: Spread;
  /** That task's start → taintedAt: the node-Ready look (and wait, for a node not Ready yet) and the taint. */
  readyLookAndTaint: Spread;
  /** Workflows whose node was not Ready at the first look and waited in the awaitNodeReady activity. */
  waitedInActivity: number;
  measured: number;
  /** Every workflow task of these workflows: scheduled → started (waiting for the worker) and started → completed. */
  workflowTaskQueued: Spread;
  workflowTaskRunning: Spread;
  /**
   * Rebalance workflow tasks running (started, not completed) when each answer arrived: at the worker's
   * maxConcurrentWorkflowTaskExecutions the answer waits for a slot, below it for the server to hand its task out.
   */
  workflowTasksRunningAtAnswer: Spread;
  /** Workflow tasks of these workflows that timed out: never started in time (on the worker's sticky queue) or not completed. */
  workflowTasksTimedOut: { scheduleToStart: number; startToClose: number };
}

interface Stages {
  /** Seconds since the epoch: when each workflow task was scheduled, started and completed. */
  workflowTasks: { scheduled: number; started: number; completed: number }[];
  answerDeliveredAt: number;
  timedOut: { scheduleToStart: number; startToClose: number };
  noticedByPoll: number;
  answerDelivered: number;
  answerTaskQueued: number;
  readyLookAndTaint: number;
  waitedInActivity: boolean;
}

/** The stages of one workflow, in seconds, or undefined when its history lacks one of them. */
export async function stagesOf(client: Client, workflowId: string, inServiceAt: Record<string, number>, taintedAt: string | undefined): Promise<Stages | undefined> {
  if (!taintedAt) return undefined;
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  let answer: { at: number; delivered: number; instanceId: string } | undefined;
  let answerTaskStarted: number | undefined;
  let waitedInActivity = false;
  const workflowTasks: Stages['workflowTasks'] = [];
  const timedOut = { scheduleToStart: 0, startToClose: 0 };
  const taskEventAt = new Map<string, number>();
  for (const event of history.events ?? []) {
    const at = tsToMs(event.eventTime) / 1000;
    if (event.workflowTaskScheduledEventAttributes) taskEventAt.set(String(event.eventId), at);
    const taskStarted = event.workflowTaskStartedEventAttributes;
    if (taskStarted) {
      taskEventAt.set(String(event.eventId), at);
      if (answer && answerTaskStarted === undefined) answerTaskStarted = at;
    }
    const taskCompleted = event.workflowTaskCompletedEventAttributes;
    if (taskCompleted) {
      const scheduledAt = taskEventAt.get(String(taskCompleted.scheduledEventId));
      const startedAt = taskEventAt.get(String(taskCompleted.startedEventId));
      if (scheduledAt !== undefined && startedAt !== undefined) workflowTasks.push({ scheduled: scheduledAt, started: startedAt, completed: at });
    }
    const taskTimedOut = event.workflowTaskTimedOutEventAttributes;
    if (taskTimedOut) {
      if (taskTimedOut.timeoutType === proto.temporal.api.enums.v1.TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START) timedOut.scheduleToStart++;
      else timedOut.startToClose++;
    }
    const signal = event.workflowExecutionSignaledEventAttributes;
    if (!answer && signal?.signalName === replacementAnswerSignal.name) {
      const payload = signal.input?.payloads?.[0];
      const value = payload ? defaultPayloadConverter.fromPayload<ReplacementAnswer>(payload) : undefined;
      if (value?.status === 'in-service') answer = { at: Date.parse(value.at) / 1000, delivered: at, instanceId: value.instanceId };
    }
    if (answer && event.activityTaskScheduledEventAttributes?.activityType?.name === 'awaitNodeReady') waitedInActivity = true;
  }
  const inService = answer ? inServiceAt[answer.instanceId] : undefined;
  if (!answer || answerTaskStarted === undefined || inService === undefined) return undefined;
  return {
    workflowTasks,
    answerDeliveredAt: answer.delivered,
    timedOut,
    noticedByPoll: answer.at - inService,
    answerDelivered: answer.delivered - answer.at,
    answerTaskQueued: answerTaskStarted - answer.delivered,
    readyLookAndTaint: Date.parse(taintedAt) / 1000 - answerTaskStarted,
    waitedInActivity,
  };
}

/** p50 and max of every stage over the workflows whose history has all of them. */
export function summarize(all: (Stages | undefined)[]): StageLags {
  const measured = all.filter((s): s is Stages => s !== undefined);
  const of = (key: KeysOf<Stages, number>): Spread => spread(measured.map((s) => s[key]));
  const tasks = measured.flatMap((s) => s.workflowTasks);
  return {
    noticedByPoll: of('noticedByPoll'),
    answerDelivered: of('answerDelivered'),
    answerTaskQueued: of('answerTaskQueued'),
    readyLookAndTaint: of('readyLookAndTaint'),
    waitedInActivity: measured.filter((s) => s.waitedInActivity).length,
    measured: measured.length,
    workflowTaskQueued: spread(tasks.map((t) => t.started - t.scheduled)),
    workflowTaskRunning: spread(tasks.map((t) => t.completed - t.started)),
    workflowTasksRunningAtAnswer: spread(measured.map((s) => runningAt(tasks, s.answerDeliveredAt))),
    workflowTasksTimedOut: {
      scheduleToStart: measured.reduce((sum, s) => sum + s.timedOut.scheduleToStart, 0),
      startToClose: measured.reduce((sum, s) => sum + s.timedOut.startToClose, 0),
    },
  };
}

function runningAt(tasks: Stages['workflowTasks'], at: number): number {
  return tasks.filter((t) => t.started <= at && at < t.completed).length;
}
