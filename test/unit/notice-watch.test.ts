// The signaler's poll loop without IMDS or an intake: a notice IMDS keeps serving is delivered once, an interruption
// notice at once, a failed delivery is retried with backoff until acknowledged without holding up the polls, and
// rebalance monitoring can be turned off.
import assert from 'node:assert/strict';
import type { InstanceAction, RebalanceRecommendation } from '../../signaler/imds.js';
import { NoticeWatch } from '../../signaler/notice-watch.js';

const INSTANCE = 'i-0123456789abcdef0';
const quiet = { info: () => undefined, warn: () => undefined };
const settle = (ms = 20): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function fakeImds() {
  return {
    rebalance: undefined as RebalanceRecommendation | undefined,
    action: undefined as InstanceAction | undefined,
    instanceId: () => Promise.resolve(INSTANCE),
    rebalanceRecommendation(): Promise<RebalanceRecommendation | undefined> {
      return Promise.resolve(this.rebalance);
    },
    instanceAction(): Promise<InstanceAction | undefined> {
      return Promise.resolve(this.action);
    },
  };
}

describe('notice watch (signaler poll loop, no server)', function () {
  it('a rebalance recommendation served on every poll is delivered once; an interruption notice as soon as it shows', async function () {
    const imds = fakeImds();
    const sent: string[] = [];
    const watch = new NoticeWatch(imds, { rebalance: async (id) => void sent.push(`rebalance ${id}`), interruption: async (id, n) => void sent.push(`${n.action} ${id}`) }, quiet, { rebalanceMonitoring: true });
    await watch.look();
    assert.deepEqual(sent, []);
    imds.rebalance = { noticeTime: '2026-12-02T10:00:00Z' };
    for (let poll = 0; poll < 30; poll++) await watch.look();
    imds.rebalance = { noticeTime: '2026-12-02T10:05:00Z' }; // AWS moved it: still the same recommendation
    await watch.look();
    imds.action = { action: 'terminate', time: '2026-12-02T10:07:00Z' };
    await watch.look();
    imds.action = { action: 'terminate', time: '2026-12-02T10:07:02Z' }; // a later read may give another time (AEMM does)
    await watch.look();
    await settle();
    assert.deepEqual(sent, [`rebalance ${INSTANCE}`, `terminate ${INSTANCE}`]);
    assert.equal(watch.undelivered(), 0);
  });

  it('a delivery that fails is retried with growing, jittered delays until acknowledged', async function () {
    const imds = fakeImds();
    imds.rebalance = { noticeTime: '2026-12-02T10:00:00Z' };
    let attempts = 0;
    let intakeUp = false;
    const delays: unknown[] = [];
    const log = { info: () => undefined, warn: (_m: string, fields?: Record<string, unknown>) => void delays.push(fields?.retryInMs) };
    const rebalance = (): Promise<void> => (++attempts, intakeUp ? Promise.resolve() : Promise.reject(new Error('connect ECONNREFUSED')));
    const watch = new NoticeWatch(imds, { rebalance, interruption: () => Promise.resolve() }, log, { rebalanceMonitoring: true, firstRetryMs: 60, maxRetryMs: 240, random: () => 1 });
    await watch.look();
    while (attempts < 5) await settle(10);
    assert.deepEqual(delays.slice(0, 4), [60, 120, 240, 240], 'doubling up to the cap (full jitter drawn at its top here)');
    assert.equal(watch.undelivered(), 1);
    intakeUp = true;
    while (watch.undelivered() > 0) await settle(10);
    const done = attempts;
    await watch.look();
    await settle(100);
    assert.equal(attempts, done, 'nothing more once acknowledged');
    watch.stop();
  });

  it('a delivery that says how long to wait (an intake\'s refusal) is retried after that long, not with the backoff', async function () {
    const imds = fakeImds();
    imds.rebalance = { noticeTime: '2026-12-02T10:00:00Z' };
    const delays: unknown[] = [];
    const log = { info: () => undefined, warn: (_m: string, fields?: Record<string, unknown>) => void delays.push(fields?.retryInMs) };
    const refused = (): Promise<void> => Promise.reject(Object.assign(new Error('intake answered HTTP 403'), { retryAfterMs: 600_000 }));
    const watch = new NoticeWatch(imds, { rebalance: refused, interruption: () => Promise.resolve() }, log, { rebalanceMonitoring: true, random: () => 1 });
    await watch.look();
    await settle();
    assert.deepEqual(delays, [600_000]);
    watch.stop();
  });

  it('the polls never wait on a delivery (an intake that does not answer)', async function () {
    const imds = fakeImds();
    imds.rebalance = { noticeTime: '2026-12-02T10:00:00Z' };
    const watch = new NoticeWatch(imds, { rebalance: () => new Promise<void>(() => undefined), interruption: () => Promise.resolve() }, quiet, { rebalanceMonitoring: true });
    for (let poll = 0; poll < 5; poll++) await watch.look(); // would hang here if a poll awaited the delivery
    assert.equal(watch.undelivered(), 1);
  });

  it('with rebalance monitoring off, only interruption notices are read and delivered', async function () {
    const imds = fakeImds();
    imds.rebalance = { noticeTime: '2026-12-02T10:00:00Z' };
    const sent: string[] = [];
    const watch = new NoticeWatch(imds, { rebalance: async () => void sent.push('rebalance'), interruption: async () => void sent.push('interruption') }, quiet, { rebalanceMonitoring: false });
    await watch.look();
    imds.action = { action: 'stop', time: '2026-12-02T10:02:00Z' };
    await watch.look();
    await settle();
    assert.deepEqual(sent, ['interruption']);
  });

  it('stop() ends the retries of deliveries still failing', async function () {
    const imds = fakeImds();
    imds.action = { action: 'terminate', time: '2026-12-02T10:02:00Z' };
    let attempts = 0;
    const watch = new NoticeWatch(imds, { rebalance: () => Promise.resolve(), interruption: () => Promise.reject(new Error(`down ${++attempts}`)) }, quiet, { rebalanceMonitoring: true, firstRetryMs: 20, random: () => 1 });
    await watch.look();
    await settle(50);
    watch.stop();
    const seen = attempts;
    await settle(150);
    assert.equal(attempts, seen);
  });
});
