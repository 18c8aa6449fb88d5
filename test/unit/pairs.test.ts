// Many pairs: where the pairs come from (the list, the shorthand, the tags; exactly one of them), the rules they must
// follow, the discovery's bad tags said once per problem, and the verify step's answer of an instance's own pair.
import assert from 'node:assert/strict';
import type { AutoScalingClient, AutoScalingGroup } from '@aws-sdk/client-auto-scaling';
import { ApplicationFailure } from '@temporalio/common';
import { FailureType } from '../../activities/errors.js';
import { ENABLED_TAG, FALLBACK_TAG, ON_DEMAND_ROLE, pairsFromTags, ROLE_TAG, type TaggedGroup } from '../../activities/pair-rules.js';
import { createProtectedPairActivities } from '../../activities/protected-instance.js';
import { fixedPairs, TagDiscovery } from '../../activities/protected-pairs.js';
import { loadConfig, type PairSource } from '../../worker/config.js';
import { FakeAutoScaling } from '../fakes/auto-scaling.js';

function sourceOf(env: Record<string, string>): PairSource {
  const result = loadConfig(env);
  assert.ok(result.ok, result.ok ? '' : result.errors.join('; '));
  return result.config.pairs;
}

function errorsOf(env: Record<string, string>): string[] {
  const result = loadConfig(env);
  assert.equal(result.ok, false, 'expected the configuration to be refused');
  return result.ok ? [] : result.errors;
}

const tagged = (name: string, tags: Record<string, string>): TaggedGroup => ({ name, tags });
const ROLE = { [ROLE_TAG]: ON_DEMAND_ROLE };
/** Existing fallback groups, tagged with the on-demand role. */
const onDemandGroups = (...names: string[]) => new Map(names.map((name) => [name, ROLE]));
const optedIn = (name: string, fallback?: string): TaggedGroup => tagged(name, { [ENABLED_TAG]: 'true', ...(fallback === undefined ? {} : { [FALLBACK_TAG]: fallback }) });

describe('pair sources (configuration)', function () {
  it('reads the list, the one-pair shorthand and the tags, each alone', function () {
    assert.deepEqual(sourceOf({ SPOT_GUARD_PAIRS: 'spotA:odA, spotB : odB' }), {
      kind: 'list',
      setting: 'SPOT_GUARD_PAIRS',
      pairs: [{ spotAsgName: 'spotA', onDemandAsgName: 'odA' }, { spotAsgName: 'spotB', onDemandAsgName: 'odB' }],
    });
    assert.deepEqual(sourceOf({ SPOT_ASG_NAME: 's', ON_DEMAND_ASG_NAME: 'o' }), { kind: 'list', setting: 'SPOT_ASG_NAME and ON_DEMAND_ASG_NAME', pairs: [{ spotAsgName: 's', onDemandAsgName: 'o' }] });
    assert.deepEqual(sourceOf({ SPOT_GUARD_PAIR_DISCOVERY: 'tags' }), { kind: 'tags', refreshSeconds: 300 });
    assert.deepEqual(sourceOf({ SPOT_GUARD_PAIR_DISCOVERY: 'tags', SPOT_GUARD_PAIR_REFRESH_INTERVAL: '30s' }), { kind: 'tags', refreshSeconds: 30 });
  });

  it('refuses two sources at once, naming both settings', function () {
    const mixes: Record<string, string>[] = [
      { SPOT_GUARD_PAIR_DISCOVERY: 'tags', SPOT_GUARD_PAIRS: 'a:b' },
      { SPOT_GUARD_PAIR_DISCOVERY: 'tags', SPOT_ASG_NAME: 'a', ON_DEMAND_ASG_NAME: 'b' },
      { SPOT_GUARD_PAIRS: 'a:b', SPOT_ASG_NAME: 'a' },
    ];
    for (const env of mixes) {
      const errors = errorsOf(env);
      assert.equal(errors.length, 1, errors.join('; '));
      for (const name of Object.keys(env)) assert.ok(errors[0]?.includes(name), `${errors[0]} names ${name}`);
    }
  });

  it('refuses no source at all, and half of the shorthand', function () {
    const [none] = errorsOf({});
    for (const name of ['SPOT_GUARD_PAIR_DISCOVERY', 'SPOT_GUARD_PAIRS', 'SPOT_ASG_NAME']) assert.ok(none?.includes(name), none);
    assert.deepEqual(errorsOf({ SPOT_ASG_NAME: 'a' }).length, 1);
    assert.match(errorsOf({ SPOT_ASG_NAME: 'a' })[0] ?? '', /^ON_DEMAND_ASG_NAME is not set/);
    assert.match(errorsOf({ SPOT_GUARD_PAIR_DISCOVERY: 'labels' })[0] ?? '', /SPOT_GUARD_PAIR_DISCOVERY="labels"/);
  });

  it('refuses bad lists, naming the bad value: empty names, a group with itself, a spot group twice, a spot group as a fallback', function () {
    const cases: [string, string][] = [
      ['spotA:', '"spotA:"'],
      ['spotA', '"spotA:"'],
      ['spotA:odA,,spotB:odB', '":"'],
      ['same:same', '"same:same"'],
      ['spotA:odA,spotA:odB', '"spotA"'],
      ['spotA:spotB,spotB:odB', '"spotB"'],
      ['spot A:odA', '"spot A"'],
    ];
    for (const [list, named] of cases) {
      const errors = errorsOf({ SPOT_GUARD_PAIRS: list });
      assert.ok(errors.length >= 1 && errors.every((e) => e.startsWith('SPOT_GUARD_PAIRS')), `${list}: ${errors.join('; ')}`);
      assert.ok(errors.some((e) => e.includes(named)), `${list}: ${errors.join('; ')} names ${named}`);
    }
  });
});

describe('pairs found by tags (the rules)', function () {
  it('pairs each opted-in spot group with the existing on-demand group it names', function () {
    const { pairs, problems } = pairsFromTags([optedIn('b-spot', 'b-od'), optedIn('a-spot', 'a-od'), tagged('off', { [ENABLED_TAG]: 'false' })], onDemandGroups('a-od', 'b-od'));
    assert.deepEqual(pairs, [{ spotAsgName: 'a-spot', onDemandAsgName: 'a-od' }, { spotAsgName: 'b-spot', onDemandAsgName: 'b-od' }]);
    assert.deepEqual(problems, []);
  });

  it('skips and reports each bad tag: no fallback, itself, a missing fallback, a spot group as fallback, each other\'s fallback, a bad enabled value', function () {
    const { pairs, problems } = pairsFromTags(
      [
        optedIn('ok', 'ok-od'),
        optedIn('none'),
        optedIn('self', 'self'),
        optedIn('lost', 'no-such-group'),
        optedIn('chain', 'ok'),
        optedIn('x', 'y'),
        optedIn('y', 'x'),
        tagged('maybe', { [ENABLED_TAG]: 'yes', [FALLBACK_TAG]: 'ok-od' }),
      ],
      onDemandGroups('ok-od', 'ok', 'self', 'x', 'y'),
    );
    assert.deepEqual(pairs, [{ spotAsgName: 'ok', onDemandAsgName: 'ok-od' }]);
    const byGroup = (name: string) => problems.filter((p) => p.message.includes(`"${name}"`));
    for (const name of ['none', 'self', 'lost', 'chain', 'maybe']) assert.equal(byGroup(name).length, 1, `one problem names ${name}: ${problems.map((p) => p.message).join(' | ')}`);
    // The two spot groups that are each other's fallback make one problem, naming both.
    assert.equal(problems.filter((p) => p.message.includes('"x"') && p.message.includes('"y"')).length, 1);
    assert.equal(problems.length, 6);
    assert.ok(byGroup('lost')[0]?.message.includes('no-such-group'));
  });

  it('pairs a fallback without the role tag all the same, and reports it (the IAM example would refuse the writes)', function () {
    const { pairs, problems } = pairsFromTags([optedIn('s', 'od')], new Map([['od', {}]]));
    assert.deepEqual(pairs, [{ spotAsgName: 's', onDemandAsgName: 'od' }]);
    assert.equal(problems.length, 1);
    assert.ok(problems[0]?.message.includes('"od"') && problems[0].message.includes(ROLE_TAG));
  });
});

/** A stub Auto Scaling client answering the discovery's two kinds of DescribeAutoScalingGroups from `groups`. */
function stubClient(groups: () => AutoScalingGroup[]): { client: AutoScalingClient; calls: number } {
  const stub = {
    calls: 0,
    client: {
      send: async (command: { input: { AutoScalingGroupNames?: string[]; Filters?: { Name: string; Values: string[] }[] } }) => {
        stub.calls++;
        const { AutoScalingGroupNames: names, Filters: filters } = command.input;
        const tagKey = filters?.find((f) => f.Name === 'tag-key')?.Values[0];
        return { AutoScalingGroups: groups().filter((g) => (names ? names.includes(g.AutoScalingGroupName ?? '') : (g.Tags ?? []).some((t) => t.Key === tagKey))) };
      },
    } as unknown as AutoScalingClient,
  };
  return stub;
}

const group = (name: string, tags: Record<string, string> = {}): AutoScalingGroup =>
  ({ AutoScalingGroupName: name, Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) }) as AutoScalingGroup;

describe('tag discovery (refreshes and reports)', function () {
  it('reports a bad tag once however many refreshes find it, again if it comes back after a fix, and follows new pairs', async function () {
    let groups = [group('a', { [ENABLED_TAG]: 'true', [FALLBACK_TAG]: 'a-od' }), group('a-od', ROLE), group('bad', { [ENABLED_TAG]: 'true', [FALLBACK_TAG]: 'gone' })];
    const warnings: string[] = [];
    const { client } = stubClient(() => groups);
    const discovery = new TagDiscovery(client, { info: () => undefined, warn: (m) => warnings.push(m) });
    const seen: string[][] = [];
    await discovery.onPairs(async (pairs) => void seen.push(pairs.map((p) => p.spotAsgName)));
    await discovery.refresh();
    await discovery.refresh();
    await discovery.refresh();
    assert.equal(warnings.filter((w) => w.includes('"bad"')).length, 1, warnings.join(' | '));
    assert.deepEqual(await discovery.current(), [{ spotAsgName: 'a', onDemandAsgName: 'a-od' }]);

    groups = [...groups, group('gone', ROLE)]; // fixed: "bad" is paired now
    await discovery.refresh();
    assert.deepEqual((await discovery.current()).map((p) => p.spotAsgName), ['a', 'bad']);
    groups = groups.filter((g) => g.AutoScalingGroupName !== 'gone'); // broken again: said again
    await discovery.refresh();
    assert.equal(warnings.filter((w) => w.includes('"bad"')).length, 2, warnings.join(' | '));
    assert.deepEqual(seen, [['a'], ['a', 'bad'], ['a']]);
  });

  it('keeps the pairs found before when a refresh fails, and says so once', async function () {
    let failing = false;
    const warnings: string[] = [];
    const { client } = stubClient(() => {
      if (failing) throw Object.assign(new Error('connect ECONNREFUSED'), { name: 'Error' });
      return [group('a', { [ENABLED_TAG]: 'true', [FALLBACK_TAG]: 'a-od' }), group('a-od', ROLE)];
    });
    const discovery = new TagDiscovery(client, { info: () => undefined, warn: (m) => warnings.push(m) });
    await discovery.refresh();
    failing = true;
    await discovery.refresh();
    await discovery.refresh();
    assert.deepEqual(await discovery.current(), [{ spotAsgName: 'a', onDemandAsgName: 'a-od' }]);
    assert.equal(warnings.length, 1, warnings.join(' | '));
  });

  it('before any discovery succeeded, the verify step fails retryably (it does not refuse)', async function () {
    const { client } = stubClient(() => {
      throw new Error('connect ECONNREFUSED');
    });
    const discovery = new TagDiscovery(client, { info: () => undefined, warn: () => undefined });
    await discovery.refresh();
    await assert.rejects(discovery.current(), (error: Error) => !(error instanceof ApplicationFailure) && /could not be read yet/.test(error.message));
  });
});

describe('verifyProtectedInstance (the verify step\'s pair)', function () {
  const aws = new FakeAutoScaling();
  const [inA] = aws.addGroup('pa-spot', { desired: 1, max: 5 });
  const [inB] = aws.addGroup('pb-spot', { desired: 1, max: 5 });
  const [inOdA] = aws.addGroup('pa-od', { desired: 1, max: 5 });
  const [untagged] = aws.addGroup('other', { desired: 1, max: 5 });
  aws.addGroup('pb-od', { desired: 0, max: 5 });
  const pairs = fixedPairs([{ spotAsgName: 'pa-spot', onDemandAsgName: 'pa-od' }, { spotAsgName: 'pb-spot', onDemandAsgName: 'pb-od' }], 'SPOT_GUARD_PAIRS');
  const { verifyProtectedInstance } = createProtectedPairActivities(aws.client, pairs, { membershipCacheMs: 0 });
  const refusal = (type: string, ...named: string[]) => (error: unknown) =>
    error instanceof ApplicationFailure && error.type === type && error.nonRetryable === true && named.every((name) => error.message.includes(name));

  it('answers the pair of the instance\'s own group', async function () {
    assert.deepEqual(await verifyProtectedInstance({ instanceId: inA ?? "" }), { spotAsgName: 'pa-spot', onDemandAsgName: 'pa-od', lifecycleState: 'InService' });
    assert.deepEqual(await verifyProtectedInstance({ instanceId: inB ?? "" }), { spotAsgName: 'pb-spot', onDemandAsgName: 'pb-od', lifecycleState: 'InService' });
  });

  it('refuses an instance of a group that is not protected, naming it and how to protect it; an on-demand group\'s too', async function () {
    await assert.rejects(verifyProtectedInstance({ instanceId: untagged ?? "" }), refusal(FailureType.groupNotProtected, '"other"', 'SPOT_GUARD_PAIRS'));
    await assert.rejects(verifyProtectedInstance({ instanceId: inOdA ?? "" }), refusal(FailureType.groupNotProtected, '"pa-od"', 'on-demand fallback of "pa-spot"'));
    await assert.rejects(verifyProtectedInstance({ instanceId: 'i-0123456789abcdef0' }), refusal(FailureType.instanceNotInGroup, 'i-0123456789abcdef0'));
  });
});
