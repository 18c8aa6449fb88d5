// Which spot groups Spot Guard protects, and the on-demand group each falls back to: a fixed list (SPOT_GUARD_PAIRS, or
// the shorthand SPOT_ASG_NAME and ON_DEMAND_ASG_NAME), or the groups' own tags, read again every refresh interval. Bad
// tags are reported once per distinct problem while it lasts, and their groups skipped.
import { type AutoScalingClient, type AutoScalingGroup, DescribeAutoScalingGroupsCommand, type Filter } from '@aws-sdk/client-auto-scaling';
import type { GroupPair } from '../workflows/shared/settings.js';
import { awsCall } from './errors.js';
import { describePairs, ENABLED_TAG, FALLBACK_TAG, type PairProblem, pairsFromTags, type TaggedGroup } from './pair-rules.js';

export interface ProtectedPairs {
  /** The pairs protected now (after the first discovery, for tags; a discovery that never succeeded throws, retryable). */
  current(): Promise<readonly GroupPair[]>;
  /** How an operator protects a group that is not: said when an instance of it is refused. */
  readonly howToProtect: string;
}

/** A fixed list: SPOT_GUARD_PAIRS, or the shorthand's one pair. */
export function fixedPairs(pairs: readonly GroupPair[], setting: string): ProtectedPairs {
  return {
    current: async () => pairs,
    howToProtect: `Spot Guard protects the spot groups of ${setting} (${describePairs(pairs)})`,
  };
}

/** Names per DescribeAutoScalingGroups call; AWS pages its answers by MaxRecords. */
const NAMES_PER_CALL = 50;

/** Every group matching the names (all when none are given) and filters, following NextToken. */
export async function describeGroupsPaged(client: AutoScalingClient, input: { names?: readonly string[]; filters?: Filter[] }): Promise<AutoScalingGroup[]> {
  const names = input.names ? [...new Set(input.names)] : undefined;
  if (names?.length === 0) return [];
  const chunks = names ? Array.from({ length: Math.ceil(names.length / NAMES_PER_CALL) }, (_, i) => names.slice(i * NAMES_PER_CALL, (i + 1) * NAMES_PER_CALL)) : [undefined];
  const groups: AutoScalingGroup[] = [];
  for (const chunk of chunks) {
    let NextToken: string | undefined;
    do {
      const output = await awsCall('describe Auto Scaling groups', () =>
        client.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: chunk, Filters: input.filters, MaxRecords: 100, NextToken })),
      );
      groups.push(...(output.AutoScalingGroups ?? []));
      NextToken = output.NextToken;
    } while (NextToken);
  }
  return groups;
}

const taggedGroup = (group: AutoScalingGroup): TaggedGroup => ({
  name: group.AutoScalingGroupName ?? '',
  tags: Object.fromEntries((group.Tags ?? []).map((tag) => [tag.Key ?? '', tag.Value ?? ''])),
});

/** One discovery: the groups carrying the enabled tag (any value), then the fallback groups they name. */
export async function discoverTaggedPairs(client: AutoScalingClient): Promise<{ pairs: GroupPair[]; problems: PairProblem[] }> {
  const tagged = (await describeGroupsPaged(client, { filters: [{ Name: 'tag-key', Values: [ENABLED_TAG] }] })).map(taggedGroup);
  const fallbacks = tagged.map((group) => group.tags[FALLBACK_TAG]?.trim() ?? '').filter((name) => name !== '');
  const existing = new Map((await describeGroupsPaged(client, { names: fallbacks })).map(taggedGroup).map((group) => [group.name, group.tags]));
  return pairsFromTags(tagged, existing);
}

const FIRST_DISCOVERY_RETRY_MS = 15_000;

export interface TagDiscoveryLog {
  info(message: string): void;
  warn(message: string): void;
}

/**
 * The pairs the tags name, read at start and every `refreshSeconds`. A failed refresh keeps the pairs of the last one
 * (a flaky API must not unprotect every group).
 */
export class TagDiscovery implements ProtectedPairs {
  readonly howToProtect = `tag the spot group ${ENABLED_TAG}=true and ${FALLBACK_TAG}=<its on-demand group>; it is protected from the next discovery on`;
  private pairs: readonly GroupPair[] | undefined;
  private first: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The problems reported and still present: each is said once, and again only if it comes back after a fix. */
  private reported = new Set<string>();
  private lastFailure: string | undefined;

  private listener: (pairs: readonly GroupPair[]) => Promise<void> = async () => {};

  constructor(
    private readonly client: AutoScalingClient,
    private readonly log: TagDiscoveryLog,
  ) {}

  /** `listener` hears of the pairs now (if found yet) and of each new set of them (to start their monitors). */
  async onPairs(listener: (pairs: readonly GroupPair[]) => Promise<void>): Promise<void> {
    this.listener = listener;
    if (this.pairs) await this.tell(this.pairs);
  }

  private async tell(pairs: readonly GroupPair[]): Promise<void> {
    await this.listener(pairs).catch((error: unknown) => this.log.warn(`could not start the monitors of the pairs found: ${(error as Error).message}`));
  }

  /** Discovers now and then every `refreshSeconds` until stop(). */
  start(refreshSeconds: number): Promise<void> {
    this.first ??= this.refresh();
    this.timer ??= setInterval(() => void this.refresh(), refreshSeconds * 1000);
    this.timer.unref();
    return this.first;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  async current(): Promise<readonly GroupPair[]> {
    await this.first;
    if (!this.pairs) throw new Error(`the groups tagged ${ENABLED_TAG}=true could not be read yet (${this.lastFailure ?? 'discovery not started'}); retried at the next discovery`);
    return this.pairs;
  }

  /** One discovery; never throws (a failure is logged once per distinct reason). */
  async refresh(): Promise<void> {
    try {
      const { pairs, problems } = await discoverTaggedPairs(this.client);
      this.lastFailure = undefined;
      this.reportProblems(problems);
      if (this.pairs === undefined || describePairs(this.pairs) !== describePairs(pairs)) {
        this.log.info(`pairs found by tags: ${pairs.length === 0 ? `none (no group tagged ${ENABLED_TAG}=true with a valid ${FALLBACK_TAG})` : describePairs(pairs)}`);
        this.pairs = pairs;
        await this.tell(pairs);
      }
    } catch (error) {
      const reason = (error as Error).message;
      if (reason !== this.lastFailure) this.log.warn(`cannot read the groups tagged ${ENABLED_TAG} (${reason}); keeping the pairs found before, retrying at the next discovery`);
      this.lastFailure = reason;
      // Nothing is protected until a first discovery succeeds: try again soon rather than at the next refresh.
      if (!this.pairs && this.timer) setTimeout(() => void this.refresh(), FIRST_DISCOVERY_RETRY_MS).unref();
    }
  }

  private reportProblems(problems: readonly PairProblem[]): void {
    for (const problem of problems) {
      if (!this.reported.has(problem.key)) this.log.warn(`bad pair tags: ${problem.message}`);
    }
    this.reported = new Set(problems.map((problem) => problem.key));
  }
}
