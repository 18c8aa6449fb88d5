// The rules a set of spot/on-demand pairs must follow, whether an operator lists them (SPOT_GUARD_PAIRS) or the groups'
// tags name them. Pure: the configuration, the tag discovery and the tests use the same functions.
import type { GroupPair } from '../workflows/shared/settings.js';

/** A spot group opts in with this tag set to `true`... */
export const ENABLED_TAG = 'spot-guard.io/enabled';
/** ...and names the on-demand group it falls back to with this one. */
export const FALLBACK_TAG = 'spot-guard.io/on-demand-fallback';
/** The on-demand groups carry this tag, set to ON_DEMAND_ROLE, so that the IAM example's tag conditions let Spot Guard write to them. */
export const ROLE_TAG = 'spot-guard.io/role';
export const ON_DEMAND_ROLE = 'on-demand-fallback';

/** A group as the discovery read it: its name and its tags. */
export interface TaggedGroup {
  name: string;
  tags: Readonly<Record<string, string>>;
}

/** A problem with one or more groups' tags; `key` is the same on every refresh while the problem lasts. */
export interface PairProblem {
  key: string;
  message: string;
}

/**
 * The pairs the opted-in spot groups' tags name, and the problems of those skipped: a fallback tag missing or empty, a
 * group its own fallback, a fallback that does not exist (`existing`: the fallback groups that do, with their tags), or a
 * fallback that is itself an opted-in spot group (two spot groups each other's fallback among them). A fallback without
 * the role tag is paired all the same, and reported: the IAM example's tag conditions would refuse the writes to it.
 */
export function pairsFromTags(tagged: readonly TaggedGroup[], existing: ReadonlyMap<string, TaggedGroup['tags']>): { pairs: GroupPair[]; problems: PairProblem[] } {
  const pairs: GroupPair[] = [];
  const problems = new Map<string, PairProblem>();
  const problem = (key: string, message: string): void => void problems.set(key, { key, message });
  const optedIn = new Map<string, string | undefined>();
  for (const group of tagged) {
    const value = group.tags[ENABLED_TAG]?.trim();
    if (value === 'true') optedIn.set(group.name, group.tags[FALLBACK_TAG]?.trim());
    else if (value !== 'false') problem(`enabled-value:${group.name}:${value}`, `group "${group.name}" has ${ENABLED_TAG}="${value}": expected true (protect it) or false; skipped`);
  }
  for (const [spot, fallback] of optedIn) {
    if (!fallback) {
      problem(`no-fallback:${spot}`, `group "${spot}" is tagged ${ENABLED_TAG}=true without a ${FALLBACK_TAG} tag: expected the name of its on-demand group; skipped`);
    } else if (fallback === spot) {
      problem(`self:${spot}`, `group "${spot}" names itself in ${FALLBACK_TAG}: expected an on-demand group of its own; skipped`);
    } else if (optedIn.get(fallback) === spot) {
      const [a, b] = [spot, fallback].sort();
      problem(`mutual:${a}:${b}`, `groups "${a}" and "${b}" name each other in ${FALLBACK_TAG}: a spot group cannot fall back to another spot group; both skipped`);
    } else if (optedIn.has(fallback)) {
      problem(`fallback-is-spot:${spot}:${fallback}`, `group "${spot}" falls back to "${fallback}", itself tagged ${ENABLED_TAG}=true: expected an on-demand group; "${spot}" skipped`);
    } else if (!existing.has(fallback)) {
      problem(`missing:${spot}:${fallback}`, `group "${spot}" falls back to "${fallback}" (${FALLBACK_TAG}), which does not exist in this account and region; skipped`);
    } else {
      pairs.push({ spotAsgName: spot, onDemandAsgName: fallback });
      if (existing.get(fallback)?.[ROLE_TAG] !== ON_DEMAND_ROLE) {
        problem(`role:${fallback}`, `on-demand group "${fallback}" (the fallback of "${spot}") is not tagged ${ROLE_TAG}=${ON_DEMAND_ROLE}: the IAM policy of deploy/iam-policy.json refuses Spot Guard's writes to it; paired all the same`);
      }
    }
  }
  pairs.sort((x, y) => x.spotAsgName.localeCompare(y.spotAsgName));
  return { pairs, problems: [...problems.values()] };
}

/**
 * What is wrong with a list of pairs an operator wrote (`setting` names where): an empty name, a group paired with
 * itself, a spot group listed twice, a group both a spot group and an on-demand group.
 */
export function problemsOfPairList(pairs: readonly GroupPair[], setting: string, isGroupName: (name: string) => boolean): string[] {
  const problems: string[] = [];
  const spotGroups = new Set<string>();
  for (const { spotAsgName: spot, onDemandAsgName: onDemand } of pairs) {
    for (const name of [spot, onDemand]) {
      if (!name) problems.push(`${setting}: an empty group name in "${spot}:${onDemand}": expected <spot group>:<on-demand group>`);
      else if (!isGroupName(name)) problems.push(`${setting}: "${name}" in "${spot}:${onDemand}" is not an Auto Scaling group name: expected 1-255 characters without blanks, commas or colons`);
    }
    if (spot && spot === onDemand) problems.push(`${setting}: "${spot}:${onDemand}" pairs a group with itself: expected a spot group and a different on-demand group`);
    if (spotGroups.has(spot)) problems.push(`${setting}: the spot group "${spot}" is listed twice: expected one on-demand group per spot group`);
    spotGroups.add(spot);
  }
  for (const { spotAsgName, onDemandAsgName } of pairs) {
    if (onDemandAsgName !== spotAsgName && spotGroups.has(onDemandAsgName)) {
      problems.push(`${setting}: "${spotAsgName}:${onDemandAsgName}" falls back to "${onDemandAsgName}", itself listed as a spot group: expected an on-demand group`);
    }
  }
  return problems;
}

/** "spotA:odA,spotB:odB" → pairs; blanks around names ignored. An entry without exactly one colon gives empty names, refused by the rules above. */
export function parsePairList(text: string): GroupPair[] {
  return text.split(',').map((entry) => {
    const parts = entry.split(':').map((part) => part.trim());
    return parts.length === 2 ? { spotAsgName: parts[0] ?? '', onDemandAsgName: parts[1] ?? '' } : { spotAsgName: entry.trim(), onDemandAsgName: '' };
  });
}

export const describePairs = (pairs: readonly GroupPair[]): string => pairs.map((p) => `${p.spotAsgName} → ${p.onDemandAsgName}`).join(', ');
