// The signaler's poll loop, one look at a time: reads the rebalance recommendation and the interruption notice from
// IMDS and hands each notice to its delivery once. IMDS keeps serving a notice on every poll; repeats send nothing
// new. A notice that could not be delivered is retried with backoff and jitter until acknowledged, in the background,
// so the 2 s poll never waits on the intake. A restart loses nothing: IMDS still serves the notice, and delivery is
// idempotent on the other side (one workflow per instance, the same request ids).
import type { ImdsClient, InstanceAction, RebalanceRecommendation } from './imds.js';

export interface NoticeDelivery {
  rebalance(instanceId: string, notice: RebalanceRecommendation): Promise<void>;
  interruption(instanceId: string, notice: InstanceAction): Promise<void>;
}

export interface WatchLog {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

export interface NoticeWatchOptions {
  /** ENABLE_REBALANCE_MONITORING (the seeds' setting): false reads interruption notices only. */
  rebalanceMonitoring: boolean;
  /** The first retry of a failed delivery waits about this long; each next one twice as long, up to `maxRetryMs`. */
  firstRetryMs?: number;
  maxRetryMs?: number;
  random?: () => number;
}

type DeliveryState = 'sending' | 'waiting-to-retry' | 'delivered';

export class NoticeWatch {
  private instanceId: string | undefined;
  /** One entry per notice (its key): a notice IMDS keeps serving is delivered once. */
  private readonly deliveries = new Map<string, { state: DeliveryState; attempts: number; timer?: NodeJS.Timeout }>();
  private stopped = false;

  constructor(
    private readonly imds: Pick<ImdsClient, 'instanceId' | 'rebalanceRecommendation' | 'instanceAction'>,
    private readonly deliver: NoticeDelivery,
    private readonly log: WatchLog,
    private readonly options: NoticeWatchOptions,
  ) {}

  /** One poll. Throws what IMDS got wrong (the loop logs it and polls again); deliveries run on their own. */
  async look(): Promise<void> {
    this.instanceId ??= await this.imds.instanceId();
    const instanceId = this.instanceId;
    const action = await this.imds.instanceAction();
    // Once per instance too: AWS acts on the instance once, whatever time a later read gives (AEMM moves it every read).
    if (action) this.send('interruption', 'interruption notice', () => this.deliver.interruption(instanceId, action));
    if (!this.options.rebalanceMonitoring) return;
    const recommendation = await this.imds.rebalanceRecommendation();
    // Once per instance: AWS may move noticeTime, but one recommendation is all Spot Guard acts on.
    if (recommendation) this.send('rebalance', 'rebalance recommendation', () => this.deliver.rebalance(instanceId, recommendation));
  }

  /** Deliveries not yet acknowledged (for readiness and logs). */
  undelivered(): number {
    return [...this.deliveries.values()].filter((d) => d.state !== 'delivered').length;
  }

  delivered(key: string): boolean {
    return this.deliveries.get(key)?.state === 'delivered';
  }

  stop(): void {
    this.stopped = true;
    for (const delivery of this.deliveries.values()) clearTimeout(delivery.timer);
  }

  private send(key: string, what: string, attempt: () => Promise<void>): void {
    if (this.deliveries.has(key) || this.stopped) return;
    const delivery = { state: 'sending' as DeliveryState, attempts: 0, timer: undefined as NodeJS.Timeout | undefined };
    this.deliveries.set(key, delivery);
    this.log.info(`${what} seen in IMDS: delivering it`, { instanceId: this.instanceId });
    const tryOnce = (): void => {
      delivery.state = 'sending';
      delivery.attempts++;
      attempt().then(
        () => {
          delivery.state = 'delivered';
          this.log.info(`${what} delivered`, { instanceId: this.instanceId, attempts: delivery.attempts });
        },
        (error: unknown) => {
          if (this.stopped) return;
          // A delivery may say how long to wait (a refusal); else backoff with jitter.
          const waitMs = (error as { retryAfterMs?: number }).retryAfterMs ?? this.retryDelay(delivery.attempts);
          delivery.state = 'waiting-to-retry';
          this.log.warn(`${what} not delivered: trying again`, { instanceId: this.instanceId, attempt: delivery.attempts, retryInMs: waitMs, error: String((error as Error).message ?? error) });
          delivery.timer = setTimeout(tryOnce, waitMs);
        },
      );
    };
    tryOnce();
  }

  /** Exponential backoff with full jitter: many nodes noticed at once do not retry in lockstep. */
  private retryDelay(attempts: number): number {
    const first = this.options.firstRetryMs ?? 1_000;
    const cap = this.options.maxRetryMs ?? 30_000;
    const ceiling = Math.min(cap, first * 2 ** (attempts - 1));
    return Math.max(50, Math.round((this.options.random ?? Math.random)() * ceiling));
  }
}
