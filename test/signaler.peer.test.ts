// The signaler process (dist/signaler/main.js) against AEMM in IMDSv2-only mode, through a proxy that can inject IMDS
// faults, reporting to a recording intake: a notice served on every poll is delivered once, an interruption notice at
// once, an intake that is down at the moment of the notice still gets it once it is back, IMDS 5xx, malformed JSON and
// a hanging IMDS are logged and survived, the token is read from its file, and SIGTERM ends it cleanly.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Aemm, startAemm } from '../scripts/peers/aemm.js';
import { stopOnExit } from '../scripts/peers/stop-on-exit.js';
import { SIGNALER_NODE_FLAGS } from '../signaler/node-flags.js';
import { freePort, until } from '../scripts/peers/wait.js';

const INSTANCE = 'i-0123456789abcdef0';
const MAIN = fileURLToPath(new URL('../signaler/main.js', import.meta.url));

type Fault = 'none' | '5xx' | 'malformed' | 'hang';

/** Forwards to AEMM, or answers the notice paths with a fault. */
function faultyImds(aemm: Aemm): { server: Server; url: () => string; fault: Fault } {
  const state = { fault: 'none' as Fault };
  const server = createServer((req, res) => {
    const notice = /\/(events\/recommendations\/rebalance|spot\/instance-action)$/.test(req.url ?? '');
    if (notice && state.fault === '5xx') return void res.writeHead(503).end('Service Unavailable');
    if (notice && state.fault === 'malformed') return void res.writeHead(200).end('{"noticeTime": ');
    if (notice && state.fault === 'hang') return; // never answers
    forward(req, res, aemm.url);
  });
  return Object.assign(state, { server, url: () => `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
}

function forward(req: IncomingMessage, res: ServerResponse, target: string): void {
  const upstream = request(`${target}${req.url}`, { method: req.method, headers: req.headers }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    answer.pipe(res);
  });
  upstream.on('error', () => res.writeHead(502).end());
  req.pipe(upstream);
}

describe('signaler process against AEMM (IMDSv2 only)', function () {
  this.timeout(90_000);
  let aemm: Aemm;
  let imds: ReturnType<typeof faultyImds>;
  let intake: Server;
  let signaler: ChildProcess;
  let output = '';
  let dir: string;
  let healthUrl: string;
  const received: { path: string; authorization?: string; body: string }[] = [];
  const intakeState = { up: false };

  before(async function () {
    aemm = await startAemm({ instanceId: INSTANCE, rebalanceDelaySeconds: 4, interruptionDelaySeconds: 14 });
    imds = faultyImds(aemm);
    await new Promise<void>((resolve) => imds.server.listen(0, '127.0.0.1', resolve));
    intake = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        if (!intakeState.up) return void res.writeHead(503).end('{"error":"down"}');
        received.push({ path: req.url ?? '', ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}), body });
        res.writeHead(202, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => intake.listen(0, '127.0.0.1', resolve));
    dir = mkdtempSync(join(tmpdir(), 'spot-guard-signaler-'));
    writeFileSync(join(dir, 'token'), 'projected-token-1\n');
    const healthAddress = `127.0.0.1:${await freePort()}`;
    healthUrl = `http://${healthAddress}`;
    signaler = spawn(process.execPath, [...SIGNALER_NODE_FLAGS, MAIN], {
      env: {
        PATH: process.env.PATH,
        SPOT_GUARD_INTAKE_URL: `http://127.0.0.1:${(intake.address() as AddressInfo).port}`,
        SPOT_GUARD_INTAKE_ALLOW_HTTP: 'true',
        SPOT_GUARD_TOKEN_FILE: join(dir, 'token'),
        SPOT_GUARD_IMDS_URL: imds.url(),
        SPOT_GUARD_IMDS_POLL_INTERVAL: '0.5s',
        SPOT_GUARD_SIGNALER_HEALTH_ADDRESS: healthAddress,
        NODE_NAME: 'node-a',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    stopOnExit(signaler);
    signaler.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    signaler.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  });
  after(async function () {
    if (signaler?.exitCode === null) signaler.kill('SIGKILL');
    imds?.server.closeAllConnections();
    imds?.server.close();
    intake?.closeAllConnections();
    intake?.close();
    await aemm?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const status = async (path: string): Promise<number> => (await fetch(`${healthUrl}${path}`).catch(() => ({ status: 0 }))).status;

  it('delivers each notice once, survives IMDS faults and an intake that is down, and stops cleanly on SIGTERM', async function () {
    await until('the signaler ready (its instance id read)', async () => (await status('/readyz')) === 200, 20_000, () => output);
    assert.equal(await status('/healthz'), 200);

    // The intake is down when the recommendation appears (4 s after AEMM's start): delivered once it is back.
    await until('the signaler trying to deliver', async () => /not delivered: trying again/.test(output), 20_000, () => output);
    assert.equal(received.length, 0);
    intakeState.up = true;
    await until('the rebalance notice delivered', async () => received.length === 1, 30_000, () => output);
    assert.deepEqual(received[0], { path: '/v1/notices/rebalance', authorization: 'Bearer projected-token-1', body: JSON.stringify({ instanceId: INSTANCE }) });

    // IMDS faults: logged, survived; the polls go on.
    for (const fault of ['5xx', 'malformed', 'hang'] as const) {
      imds.fault = fault;
      const pattern = { '5xx': /HTTP 503/, malformed: /not JSON/, hang: /no answer within/ }[fault];
      await until(`the ${fault} fault logged`, async () => pattern.test(output), 15_000, () => output);
      assert.equal(signaler.exitCode, null, `survived ${fault}`);
    }
    imds.fault = 'none';
    writeFileSync(join(dir, 'token'), 'projected-token-2\n'); // the kubelet rotated it

    // The interruption notice (14 s after AEMM's start) is delivered once, with the rotated token.
    await until('the interruption notice delivered', async () => received.length === 2, 30_000, () => output);
    assert.equal(received[1]?.path, '/v1/notices/interruption');
    assert.equal(received[1]?.authorization, 'Bearer projected-token-2');
    assert.deepEqual(Object.keys(JSON.parse(received[1]?.body ?? '{}') as object), ['instanceId', 'action', 'time']);

    await new Promise((resolve) => setTimeout(resolve, 3_000)); // six more polls: IMDS still serves both notices
    assert.equal(received.length, 2, 'repeats send nothing new');

    signaler.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => (signaler.exitCode !== null ? resolve(signaler.exitCode) : signaler.once('exit', resolve)));
    assert.equal(code, 0, output);
    assert.match(output, /"message":"signaler stopping","signal":"SIGTERM"/);
  });

  it('refuses to start on a bad setting, naming it', async function () {
    const bad = spawn(process.execPath, [MAIN], { env: { PATH: process.env.PATH, SPOT_GUARD_INTAKE_URL: 'intake' }, stdio: ['ignore', 'pipe', 'pipe'] });
    stopOnExit(bad);
    let text = '';
    bad.stderr?.on('data', (chunk: Buffer) => (text += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => bad.once('exit', resolve));
    assert.equal(code, 2);
    const messages = text.trim().split('\n').map((line) => (JSON.parse(line) as { message: string }).message);
    assert.match(messages[0] ?? '', /SPOT_GUARD_INTAKE_URL="intake": expected the intake's URL/);
  });
});
