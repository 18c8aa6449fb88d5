// The IMDS peer of the signaler's tests: amazon-ec2-metadata-mock started by scripts/peers/aemm.ts, IMDSv2 only,
// answering as the signaler will see it (the session token, the instance id, the rebalance recommendation after its
// delay, the spot interruption notice only when configured), and gone after stop() or when the process that started
// it is interrupted.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Aemm, AEMM_DEFAULT_INSTANCE_ID, startAemm } from '../scripts/peers/aemm.js';
import { until } from '../scripts/peers/wait.js';

const TTL_HEADER = 'X-aws-ec2-metadata-token-ttl-seconds';
const TOKEN_HEADER = 'X-aws-ec2-metadata-token';

async function token(aemm: Aemm): Promise<string> {
  const response = await fetch(`${aemm.url}/latest/api/token`, { method: 'PUT', headers: { [TTL_HEADER]: '60' } });
  assert.equal(response.status, 200, aemm.log());
  return response.text();
}

async function get(aemm: Aemm, path: string, sessionToken?: string): Promise<{ status: number; body: string }> {
  const response = await fetch(`${aemm.url}${path}`, { headers: sessionToken ? { [TOKEN_HEADER]: sessionToken } : {} });
  return { status: response.status, body: await response.text() };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('amazon-ec2-metadata-mock, the IMDS peer (IMDSv2 only)', function () {
  const instanceId = 'i-0aaaabbbbccccdddd';
  let warned: Aemm | undefined; // rebalance after 2 s, interruption after 3 s
  let quiet: Aemm | undefined; // no notice at all
  let warnedToken = '';

  before(async function () {
    [warned, quiet] = await Promise.all([
      startAemm({ rebalanceDelaySeconds: 2, interruptionDelaySeconds: 3, instanceId }),
      startAemm({ rebalanceDelaySeconds: null }),
    ]);
  });
  after(async () => Promise.all([warned?.stop(), quiet?.stop()]));

  it('refuses a request without a session token with 401, and answers one with a token from PUT /latest/api/token', async function () {
    assert.equal((await get(warned!, '/latest/meta-data/instance-id')).status, 401);
    warnedToken = await token(warned!);
    assert.ok(warnedToken.length > 0);
    assert.deepEqual(await get(warned!, '/latest/meta-data/instance-id', warnedToken), { status: 200, body: instanceId });
    assert.deepEqual(await get(quiet!, '/latest/meta-data/instance-id', await token(quiet!)), { status: 200, body: AEMM_DEFAULT_INSTANCE_ID });
    // A token without the TTL header is refused.
    assert.equal((await fetch(`${warned!.url}/latest/api/token`, { method: 'PUT' })).status, 400);
  });

  it('serves the rebalance recommendation only once its delay has passed: 404, then {"noticeTime"}', async function () {
    const path = '/latest/meta-data/events/recommendations/rebalance';
    // AEMM compares whole seconds of the clock: a 2 s delay is served between 1 and 2 s after its start.
    assert.ok(Date.now() - warned!.startedAt < 1000, 'the test came too late to see the recommendation not yet served');
    assert.equal((await get(warned!, path, warnedToken)).status, 404);
    let served = { status: 0, body: '' };
    await until('the rebalance recommendation', async () => (served = await get(warned!, path, warnedToken)).status === 200, 5000, () => warned!.log());
    assert.ok(Date.now() - warned!.startedAt >= 1000, 'served more than a second before its delay');
    const { noticeTime } = JSON.parse(served.body) as { noticeTime: string };
    assert.match(noticeTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  });

  it('serves the spot interruption notice when configured, after its delay, and never when not', async function () {
    const path = '/latest/meta-data/spot/instance-action';
    let served = { status: 0, body: '' };
    await until('the interruption notice', async () => (served = await get(warned!, path, warnedToken)).status === 200, 5000, () => warned!.log());
    assert.ok(Date.now() - warned!.startedAt >= 2000, 'served more than a second before its delay');
    const notice = JSON.parse(served.body) as { action: string; time: string };
    assert.equal(notice.action, 'terminate');
    // The instance goes two minutes after the notice.
    const lead = Date.parse(notice.time) - Date.now();
    assert.ok(lead > 100_000 && lead <= 121_000, `the action time ${notice.time} is ${lead} ms away`);

    // The quiet one, as long after its start as the notice above: nothing.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, quiet!.startedAt + 3000 - Date.now())));
    const quietToken = await token(quiet!);
    assert.equal((await get(quiet!, path, quietToken)).status, 404);
    assert.equal((await get(quiet!, '/latest/meta-data/events/recommendations/rebalance', quietToken)).status, 404);
  });

  it('is gone after stop()', async function () {
    const pids = [warned!.pid, quiet!.pid];
    assert.deepEqual(pids.map(alive), [true, true]);
    await Promise.all([warned!.stop(), quiet!.stop()]);
    assert.deepEqual(pids.map(alive), [false, false]);
    assert.deepEqual([warned!.dir, quiet!.dir].map(existsSync), [false, false]);
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`is gone when the process that started it gets ${signal}, which still ends that process`, async function () {
      const aemmModule = fileURLToPath(new URL('../scripts/peers/aemm.js', import.meta.url));
      const script = `const { startAemm } = await import(${JSON.stringify(aemmModule)}); const a = await startAemm(); console.log(a.pid, a.dir); setInterval(() => {}, 1000);`;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      const ended = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, s) => resolve(s)));
      await until('the started AEMM', () => /^\d+ \S+\n/.test(out), 15_000);
      const [pid, dir] = [Number(out.split(' ')[0]), out.trim().split(' ')[1]];
      assert.ok(existsSync(dir));
      assert.ok(alive(pid));
      child.kill(signal);
      assert.equal(await ended, signal);
      await until(`AEMM ${pid} gone`, () => !alive(pid), 2000);
      assert.ok(!existsSync(dir), `its temporary directory ${dir} is left`);
    });
  }
});
