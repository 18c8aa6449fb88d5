// The capacity workflow's replacement waiters without a server: the rules of the one 10 s group poll that serves every
// waiter, held against random sequences of increases, polls and the passing of time.
import assert from 'node:assert/strict';
import type { GroupProgress } from '../../workflows/shared/activity-types.js';
import { LATE_WATCH_MS, ReplacementWaiters, SHORTFALL_CONFIRM_MS, capacityErrorFor } from '../../workflows/capacity/replacement-waiters.js';
import { LATE_SUFFIX, type ReplacementAnswer } from '../../workflows/capacity/api.js';
import { forSeeds, type Random } from '../helpers/random.js';

const T0 = Date.parse('2026-11-29T00:00:00Z');
const iso = (ms: number): string => new Date(ms).toISOString();
const noSlot = (): undefined => undefined;

function increase(requestId: string, waitSeconds = 120) {
  return { requestId, waiter: { workflowId: `wf-${requestId}`, waitSeconds, pollIntervalSeconds: 10 } };
}

describe('replacement waiters (the 10 s group poll, no server)', function () {
  it('new InService instances go to the oldest waiters first; the group as it was before the increase is nobody\'s', function () {
    const waiters = new ReplacementWaiters(undefined, T0);
    waiters.add(increase('a'), iso(T0), ['i-old'], T0);
    waiters.add(increase('b'), iso(T0), ['i-old'], T0 + 1000);
    assert.equal(waiters.nextPollAt, T0, 'the first waiter of a wave gets a look at once');
    waiters.startPoll('g');
    const answers = waiters.settle({ desiredCapacity: 3, inService: ['i-old', 'i-new1'], launching: ['i-new2'], capacityProblems: [] }, T0 + 2000, noSlot);
    assert.deepEqual(answers.map((a) => [a.workflowId, a.answer.status, (a.answer as { instanceId?: string }).instanceId]), [['wf-a', 'in-service', 'i-new1']]);
    assert.equal(waiters.count, 1);
    assert.equal(waiters.launchingForWaiters, 1, 'an instance launching for every waiter left');
    assert.deepEqual(waiters.startPoll('g'), { asgName: 'g', since: iso(T0), instancesOnly: true }, 'then the poll reads the instances alone');
    assert.equal(waiters.nextPollAt, T0 + 5000, 'twice per interval while launching, on the 5 s grid of the wall clock');
  });

  it('a late watch whose hour is up goes on while a launch may be its own, then ends and its on-demand +1 is counted for giving back', function () {
    const waiters = new ReplacementWaiters(undefined, T0);
    const fallback = { ...increase('od', 60), waiter: { ...increase('od', 60).waiter, fallbackFor: { spotAsgName: 's', warnedInstanceId: 'i-w', warnedNodeName: 'n' } } };
    waiters.add(fallback, iso(T0), ['i-old'], T0);
    const poll = (at: number, launching: string[]) => {
      waiters.startPoll('g');
      return waiters.settle({ desiredCapacity: 2, inService: ['i-old'], launching, capacityProblems: [] }, at, noSlot);
    };
    assert.equal(poll(T0 + 61_000, [])[0]?.answer.status, 'timed-out');
    assert.equal(waiters.lateCount, 1, 'watched for a late instance');
    poll(T0 + 61_000 + LATE_WATCH_MS, ['i-stuck']);
    assert.equal(waiters.lateCount, 1, 'its hour is up, but an instance is still launching');
    assert.equal(waiters.lapsedFallbacks, 0);
    assert.equal(waiters.nextPollAt, T0 + 61_000 + LATE_WATCH_MS + 60_000, 'looked at once a minute meanwhile, not every second');
    poll(T0 + 62_000 + LATE_WATCH_MS, []);
    assert.equal(waiters.lateCount, 0, 'the launch went away: the watch ends');
    assert.equal(waiters.lapsedFallbacks, 1);
  });

  it('launches the group still owes current waiters are counted, so a lapsed fallback\'s give-back never drops one', function () {
    const waiters = new ReplacementWaiters(undefined, T0);
    waiters.add(increase('a'), iso(T0), ['i-old'], T0);
    waiters.add(increase('b'), iso(T0), ['i-old'], T0);
    waiters.add(increase('dry'), iso(T0), ['i-old'], T0, true);
    const progress = { desiredCapacity: 3, inService: ['i-old'], launching: ['i-x'], capacityProblems: [] };
    waiters.startPoll('g');
    waiters.settle(progress, T0 + 1000, noSlot);
    assert.equal(waiters.unlaunchedClaims(progress), 1, 'b: nothing launching for it yet (a dry run\'s waiter claims nothing)');
  });

  it('a late watch kept by a launch that never ends still ends 6 hours past its hour', function () {
    const waiters = new ReplacementWaiters(undefined, T0);
    waiters.add(increase('s', 60), iso(T0), ['i-old'], T0);
    const poll = (at: number) => {
      waiters.startPoll('g');
      waiters.settle({ desiredCapacity: 2, inService: ['i-old'], launching: ['i-stuck'], capacityProblems: [] }, at, noSlot);
    };
    poll(T0 + 61_000);
    poll(T0 + 61_000 + LATE_WATCH_MS + 6 * 3600_000 - 1000);
    assert.equal(waiters.lateCount, 1);
    poll(T0 + 61_000 + LATE_WATCH_MS + 6 * 3600_000);
    assert.equal(waiters.lateCount, 0);
    assert.equal(waiters.nextPollAt, undefined, 'nobody left to poll for');
  });

  it('a launch someone else removed with a decrement withdraws the oldest waiter once the shortfall lasts, and the next instance goes to the newer one', function () {
    const waiters = new ReplacementWaiters(undefined, T0);
    const poll = (at: number, desiredCapacity: number, inService: string[], launching: string[]) => {
      waiters.startPoll('g');
      return waiters.settle({ desiredCapacity, inService, launching, capacityProblems: [] }, at, noSlot).map((a) => a.answer as ReplacementAnswer);
    };
    waiters.add(increase('a'), iso(T0), ['i-b'], T0);
    assert.deepEqual(poll(T0, 2, ['i-b'], ['i-x']), [], 'its launch is under way');
    assert.deepEqual(poll(T0 + 5000, 1, ['i-b'], []), [], 'i-x removed with a decrement: a shortfall seen once is not enough');
    waiters.add(increase('b'), iso(T0 + 8000), ['i-b'], T0 + 8000);
    const withdrawn = poll(T0 + 10_000, 2, ['i-b'], ['i-y']);
    assert.deepEqual(withdrawn.map((a) => [a.requestId, a.status]), [['a', 'withdrawn']], 'the oldest, whose +1 was taken back before b asked');
    assert.equal(waiters.lateCount, 0, 'a withdrawn waiter is not watched for a late instance');
    const served = poll(T0 + 15_000, 2, ['i-b', 'i-y'], []);
    assert.deepEqual(served.map((a) => [a.requestId, a.status === 'in-service' ? a.instanceId : a.status]), [['b', 'i-y']]);
  });

  it('a read that shows a decrement before its instance has left withdraws nobody; nor does a full look within the confirmation time', function () {
    const waiters = new ReplacementWaiters(undefined, T0);
    waiters.add(increase('a'), iso(T0), ['i-b1', 'i-b2'], T0);
    waiters.startPoll('g');
    assert.deepEqual(waiters.settle({ desiredCapacity: 2, inService: ['i-b1', 'i-b2'], launching: ['i-x'], capacityProblems: [] }, T0 + 1000, noSlot), [], 'i-b2 still InService, desired already down');
    assert.deepEqual(waiters.withdrawUnbacked({ desiredCapacity: 2, counted: ['i-b1', 'i-b2', 'i-x'] }, T0 + 1000 + SHORTFALL_CONFIRM_MS - 1), []);
    assert.deepEqual(waiters.withdrawUnbacked({ desiredCapacity: 2, counted: ['i-b1', 'i-x'] }, T0 + 1000 + SHORTFALL_CONFIRM_MS), [], 'i-b2 has left: no shortfall');
    assert.deepEqual(waiters.withdrawUnbacked({ desiredCapacity: 2, counted: ['i-b1', 'i-b2', 'i-x'] }, T0 + 2000 + SHORTFALL_CONFIRM_MS), [], 'seen again, the time counts from anew');
    const answers = waiters.withdrawUnbacked({ desiredCapacity: 2, counted: ['i-b1', 'i-b2'] }, T0 + 2000 + 2 * SHORTFALL_CONFIRM_MS);
    assert.deepEqual(answers.map((a) => [a.workflowId, (a.answer as ReplacementAnswer).status]), [['wf-a', 'withdrawn']]);
    assert.equal(waiters.count, 0);
    assert.equal(waiters.nextPollAt, undefined, 'nobody left to poll for');
  });

  it('a dry run\'s waiter claims no launch and is never withdrawn', function () {
    const waiters = new ReplacementWaiters(undefined, T0);
    waiters.add(increase('dry'), iso(T0), ['i-b'], T0, true);
    assert.deepEqual(waiters.withdrawUnbacked({ desiredCapacity: 1, counted: ['i-b'] }, T0), []);
    assert.deepEqual(waiters.withdrawUnbacked({ desiredCapacity: 1, counted: ['i-b'] }, T0 + 60_000), []);
    assert.equal(waiters.count, 1);
  });

  it('capacity-error detection counts only problems that started at or after the waiter\'s request', function () {
    const problem = (startTime: string) => ({ activityId: 'x', statusCode: 'Failed', message: 'InsufficientInstanceCapacity', startTime });
    assert.equal(capacityErrorFor({ since: iso(T0) }, [problem(iso(T0 - 1))]), undefined);
    assert.ok(capacityErrorFor({ since: iso(T0) }, [problem(iso(T0))]));
  });

  it('random sequences: each waiter answered exactly once, no instance given twice, in-service only from the poll, nobody left behind at its deadline, withdrawn no more than others\' decrements', function () {
    forSeeds(300, (random) => runSequence(random));
  });
});

function runSequence(random: Random): void {
  let now = T0;
  const baseline = ['i-b1', 'i-b2'];
  const waiters = new ReplacementWaiters(undefined, now);
  const added = new Map<string, { before: string[]; deadline: number }>();
  const answered = new Map<string, ReplacementAnswer>();
  const given = new Set<string>();
  let inService = [...baseline];
  let launching: string[] = [];
  let desired = baseline.length;
  let othersDecrements = 0;
  let withdrawals = 0;
  let waveBefore: string[] = [];
  let next = 0;
  for (let step = 0; step < 60; step++) {
    now += random.int(8000);
    const op = random.int(5);
    if (op === 0) {
      const id = `r${next++}`;
      const waitSeconds = 5 + random.int(60);
      // As the capacity workflow does: the group's instances just before the increase. A wave's waiters share the
      // baseline of its first: any instance new since then is replacement capacity, whoever's increase launched it.
      if (waiters.count === 0) waveBefore = [...inService, ...launching];
      waiters.add(increase(id, waitSeconds), iso(now), [...inService, ...launching], now);
      desired++;
      added.set(id, { before: waveBefore, deadline: now + waitSeconds * 1000 });
    } else if (op === 1 && inService.length + launching.length < desired && random.chance(0.8)) {
      launching = [...launching, `i-n${next++}`];
    } else if (op === 2 && launching.length > 0) {
      inService = [...inService, ...launching.slice(0, 1)];
      launching = launching.slice(1);
    } else if (op === 3 && launching.length > 0 && random.chance(0.3)) {
      // Someone else removes a launching instance with a decrement.
      launching = launching.slice(1);
      desired--;
      othersDecrements++;
    } else if (waiters.pollDue(now)) {
      const progress: GroupProgress | undefined = random.chance(0.1)
        ? undefined
        : { desiredCapacity: desired, inService, launching, capacityProblems: random.chance(0.15) ? [{ activityId: 'a', statusCode: 'Failed', message: 'no capacity', startTime: iso(now - random.int(20_000)) }] : [] };
      waiters.startPoll('g');
      for (const { workflowId, answer: delivered } of waiters.settle(progress, now, noSlot)) {
        const answer = delivered as ReplacementAnswer;
        if (answer.requestId.endsWith(LATE_SUFFIX)) {
          checkLateAnswer(answer, workflowId, { added, answered, given, progress });
          continue;
        }
        assert.equal(workflowId, `wf-${answer.requestId}`, 'each answer goes to the waiter that asked');
        assert.ok(added.has(answer.requestId), `${answer.requestId} was waiting`);
        assert.ok(!answered.has(answer.requestId), `${answer.requestId} answered once`);
        answered.set(answer.requestId, answer);
        if (answer.status === 'in-service') {
          assert.ok(!given.has(answer.instanceId), `${answer.instanceId} given to one waiter only`);
          assert.ok(!added.get(answer.requestId)?.before.includes(answer.instanceId), 'never an instance of the group before its wave began');
          assert.ok(progress?.inService.includes(answer.instanceId), 'an instance InService at that poll');
          given.add(answer.instanceId);
        }
        if (answer.status === 'timed-out') assert.ok(now >= (added.get(answer.requestId)?.deadline ?? Infinity), 'timed out only at its deadline');
        if (answer.status === 'withdrawn') withdrawals++;
      }
      assert.ok(withdrawals <= othersDecrements, `${withdrawals} waiter(s) withdrawn, for ${othersDecrements} decrement(s) made by others`);
      for (const w of waiters.waits.waiters) assert.ok(Date.parse(w.deadline) > now, `${w.requestId} still waits only before its deadline`);
    }
    const answeredOnTime = [...answered.keys()].filter((id) => !id.endsWith(LATE_SUFFIX)).length;
    assert.equal(waiters.count + answeredOnTime, added.size, 'every waiter is waiting or answered');
    assert.equal(waiters.nextPollAt !== undefined, waiters.count > 0 || waiters.lateCount > 0, 'a poll is scheduled exactly while someone waits or is watched for a late instance');
  }
}

/** A late instance: only for a wait that ended without one, once, never an instance given before or from before the wave. */
function checkLateAnswer(
  answer: ReplacementAnswer,
  workflowId: string,
  seen: { added: Map<string, { before: string[] }>; answered: Map<string, ReplacementAnswer>; given: Set<string>; progress: GroupProgress | undefined },
): void {
  const base = answer.requestId.slice(0, -LATE_SUFFIX.length);
  assert.equal(workflowId, `wf-${base}`, 'a late answer goes to the waiter that asked');
  assert.ok(seen.answered.has(base) && seen.answered.get(base)?.status !== 'in-service', `${base} ended its wait without an instance`);
  assert.ok(!seen.answered.has(answer.requestId), `${answer.requestId} answered once`);
  seen.answered.set(answer.requestId, answer);
  assert.equal(answer.status, 'in-service');
  if (answer.status !== 'in-service') return;
  assert.ok(!seen.given.has(answer.instanceId), `${answer.instanceId} given to one waiter only`);
  assert.ok(!seen.added.get(base)?.before.includes(answer.instanceId), 'never an instance of the group before its wave began');
  assert.ok(seen.progress?.inService.includes(answer.instanceId), 'an instance InService at that poll');
  seen.given.add(answer.instanceId);
}
