// Answers to waiting workflows leave through one sendAnswers activity per batch (one history entry for hundreds of
// answers, where signal commands would add two events each), in the background: the loop goes on polling and
// applying requests while a wave's answers are delivered.
import { condition, log } from '@temporalio/workflow';
import { rootMessage } from '../shared/failures.js';
import { sendAnswers } from './activities.js';
import type { WorkflowAnswer } from './api.js';

/** Answers per sendAnswers activity: keeps each one's input, recorded in history, far below the payload limit. */
const ANSWERS_PER_ACTIVITY = 250;
/** sendAnswers activities at once: a wave's answers go out in parallel without one group flooding the server. */
const MAX_DELIVERIES_IN_FLIGHT = 4;

export class AnswerOutbox {
  private readonly delivering = new Set<Promise<void>>();

  constructor(private readonly asgName: string) {}

  /** Nothing under way: continue-as-new waits for this, as the next run would not know to send them. */
  get idle(): boolean {
    return this.delivering.size === 0;
  }

  /** Queues the answers for delivery; returns once they are under way, not delivered. */
  async send(answers: WorkflowAnswer[]): Promise<void> {
    for (let i = 0; i < answers.length; i += ANSWERS_PER_ACTIVITY) {
      await condition(() => this.delivering.size < MAX_DELIVERIES_IN_FLIGHT);
      const delivery: Promise<void> = this.deliver(answers.slice(i, i + ANSWERS_PER_ACTIVITY)).finally(() => this.delivering.delete(delivery));
      this.delivering.add(delivery);
    }
  }

  private async deliver(answers: WorkflowAnswer[]): Promise<void> {
    try {
      const { gone } = await sendAnswers({ answers });
      // The waiting workflow is gone (ended or terminated by an operator): nobody is left to tell.
      if (gone.length > 0) log.warn('some answered workflows are gone', { asgName: this.asgName, gone });
    } catch (error) {
      log.warn('could not deliver answers; the waiting workflows ask again or time out', { asgName: this.asgName, answers: answers.length, error: rootMessage(error) });
    }
  }
}
