// Talks to a capacity workflow the way a rebalance workflow does, from a test: each request goes by the real request
// activity (Signal-with-Start), and its answer, which the capacity workflow sends by its sendAnswers activity, is caught
// here instead of being signalled to a workflow. So a test awaits "the answer to request X" without a requester workflow.
import { createCapacityRequestActivities } from '../../activities/capacity-requests.js';
import type {
  IncreaseCapacityRequest,
  IncreaseGrant,
  ReplacementWaiterRequest,
  RetireInstanceRequest,
  RetireInstanceResult,
  WorkflowAnswer,
} from '../../workflows/capacity/api.js';
import type { Harness } from './harness.js';
import { until } from '../../scripts/peers/wait.js';

type Answer = WorkflowAnswer['answer'];

export class CapacityRequester {
  /** Every answer delivered, in order: a request answered twice shows twice. */
  readonly delivered: WorkflowAnswer[] = [];
  readonly requests: ReturnType<typeof createCapacityRequestActivities>;
  /** The workflow named as the waiter and the one to reply to: nobody runs under it, its answers land here. */
  readonly workflowId = 'test-requester';

  constructor(private readonly h: Harness) {
    this.requests = createCapacityRequestActivities(h.env.client, h.taskQueue);
    h.activityOverrides.sendAnswers = async ({ answers }) => {
      this.delivered.push(...answers);
      return { delivered: answers.length, gone: [] };
    };
  }

  waiter(overrides: Partial<ReplacementWaiterRequest> = {}): ReplacementWaiterRequest {
    return { workflowId: this.workflowId, waitSeconds: 600, pollIntervalSeconds: 10, ...overrides };
  }

  /** Spot +1 with a waiter; resolves with the grant, rejects with the failure's message. */
  async increase(requestId: string, options: Partial<Omit<IncreaseCapacityRequest, 'requestId'>> = {}): Promise<IncreaseGrant> {
    await this.requests.requestCapacityIncrease({ asgName: this.h.spot, requestId, waiter: this.waiter(), ...options });
    return settled(await this.answer('capacityAnswer', requestId)) as IncreaseGrant;
  }

  /** A retirement (or a look), answered to this requester. */
  async retire(request: Omit<RetireInstanceRequest, 'replyTo'>, asgName = this.h.spot): Promise<RetireInstanceResult> {
    await this.requests.requestInstanceRetirement({ asgName, ...request, replyTo: this.workflowId });
    return settled(await this.answer('retirementAnswer', request.requestId)) as RetireInstanceResult;
  }

  /** The first answer on `signalName` to `requestId`, once it was delivered. */
  async answer(signalName: string, requestId: string, timeoutMs = 30_000): Promise<Answer> {
    await until(`the ${signalName} to ${requestId}`, () => this.answersTo(signalName, requestId).length > 0, timeoutMs);
    return this.answersTo(signalName, requestId)[0];
  }

  answersTo(signalName: string, requestId: string): Answer[] {
    return this.delivered.filter((d) => d.signalName === signalName && d.answer.requestId === requestId).map((d) => d.answer);
  }
}

/** An answer without its request id; a failure becomes a rejection with its message. */
function settled(answer: Answer): Omit<Answer, 'requestId'> {
  if (answer.status === 'failed') throw new Error(answer.message);
  const { requestId: _requestId, ...rest } = answer;
  return rest;
}
