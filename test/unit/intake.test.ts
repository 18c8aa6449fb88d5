// The intake's checks over HTTP with a fake Kubernetes and Spot Guard behind them: a signaler may report a notice
// only for its own instance, with a token of its own ServiceAccount bound to its pod on its node; every refusal says
// why and starts nothing; each node gets a few requests a minute. (The real TokenReview is in the signaler's peer test.)
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type IntakeDeps, intakeHandler, type ReviewedToken } from '../../worker/intake.js';

const AUDIENCE = 'spot-guard-intake';
const SA = 'spot-guard/spot-guard-signaler';
const A = { node: 'node-a', instance: 'i-0aaaaaaaaaaaaaaaa', pod: 'signaler-a', uid: 'uid-a' };
const B = { node: 'node-b', instance: 'i-0bbbbbbbbbbbbbbbb', pod: 'signaler-b', uid: 'uid-b' };

function fakes() {
  const started: string[] = [];
  const tokens = new Map<string, ReviewedToken>();
  for (const who of [A, B]) {
    tokens.set(`token-${who.node}`, { authenticated: true, audiences: [AUDIENCE], username: 'system:serviceaccount:spot-guard:spot-guard-signaler', podName: who.pod, podUid: who.uid, nodeName: who.node });
  }
  tokens.set('token-other-audience', { authenticated: true, audiences: ['https://kubernetes.default.svc'], username: 'system:serviceaccount:spot-guard:spot-guard-signaler', podName: A.pod, podUid: A.uid, nodeName: A.node });
  tokens.set('token-other-sa', { authenticated: true, audiences: [AUDIENCE], username: 'system:serviceaccount:default:default', podName: A.pod, podUid: A.uid, nodeName: A.node });
  const deps: IntakeDeps = {
    reviewToken: (token) => Promise.resolve(tokens.get(token) ?? { authenticated: false, error: 'token has expired', audiences: [] }),
    readPod: (_ns, name) => Promise.resolve([A, B].filter((w) => w.pod === name).map((w) => ({ uid: w.uid, nodeName: w.node }))[0]),
    readNode: (name) => Promise.resolve([A, B].filter((w) => w.node === name).map((w) => ({ providerID: `aws:///us-east-1a/${w.instance}` }))[0]),
    verifyProtected: (id) => Promise.resolve(id === B.instance ? { refused: 'belongs to group "batch-asg", not "spot-asg"' } : { spotAsgName: 'pair-a-spot' }),
    rebalance: ({ instanceId }, group) => (started.push(`rebalance ${instanceId} in ${group}`), Promise.resolve({ workflowId: `spot-guard-rebalance-${instanceId}` })),
    interruption: ({ instanceId }, n, group) => (started.push(`${n.action} ${instanceId} in ${group}`), Promise.resolve({ workflowId: `spot-guard-rebalance-${instanceId}` })),
  };
  return { deps, started };
}

describe('intake (worker, fake Kubernetes)', function () {
  let server: Server;
  let url: string;
  let started: string[];
  let now = 0;

  beforeEach(async function () {
    const f = fakes();
    started = f.started;
    now = 0;
    server = createServer(intakeHandler(f.deps, { audience: AUDIENCE, signalerServiceAccount: SA, requestsPerNodePerMinute: 3 }, { info: () => undefined, warn: () => undefined }, () => now));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterEach(async function () {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const post = async (path: string, token: string | undefined, body: unknown): Promise<{ status: number; body: { error?: string; workflowId?: string } }> => {
    const response = await fetch(`${url}${path}`, {
      method: 'POST',
      headers: token ? { authorization: `Bearer ${token}` } : {},
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as { error?: string; workflowId?: string } };
  };

  it('a signaler reporting its own instance starts its workflow, naming the group found; an interruption notice is delivered', async function () {
    const rebalance = await post('/v1/notices/rebalance', 'token-node-a', { instanceId: A.instance });
    assert.deepEqual([rebalance.status, rebalance.body.workflowId], [202, `spot-guard-rebalance-${A.instance}`]);
    const interruption = await post('/v1/notices/interruption', 'token-node-a', { instanceId: A.instance, action: 'terminate', time: '2026-12-02T10:02:00Z' });
    assert.equal(interruption.status, 202);
    // The start names the pair's spot group the check found the instance in (the workflow's summary shows it).
    assert.deepEqual(started, [`rebalance ${A.instance} in pair-a-spot`, `terminate ${A.instance} in pair-a-spot`]);
  });

  it('refuses, with the status and the reason, and starts nothing: another node\'s instance, foreign or expired tokens, bad bodies, unprotected instances', async function () {
    const cases: [string, string | undefined, unknown, number, RegExp][] = [
      ['/v1/notices/rebalance', 'token-node-a', { instanceId: B.instance }, 403, /node node-a is instance i-0aaaaaaaaaaaaaaaa: a signaler may report only its own instance, not i-0bbbbbbbbbbbbbbbb/],
      ['/v1/notices/rebalance', 'token-other-audience', { instanceId: A.instance }, 401, /not issued for the audience "spot-guard-intake"/],
      ['/v1/notices/rebalance', 'token-expired', { instanceId: A.instance }, 401, /token refused by the Kubernetes API: token has expired/],
      ['/v1/notices/rebalance', 'token-other-sa', { instanceId: A.instance }, 403, /only the signaler's ServiceAccount/],
      ['/v1/notices/rebalance', undefined, { instanceId: A.instance }, 401, /no bearer token/],
      ['/v1/notices/rebalance', 'token-node-a', 'not json', 400, /is not a JSON object/],
      ['/v1/notices/rebalance', 'token-node-a', { instanceId: 7 }, 400, /"instanceId" 7: expected a non-empty string/],
      ['/v1/notices/interruption', 'token-node-a', { instanceId: A.instance, action: 'explode', time: '2026-12-02T10:02:00Z' }, 400, /action "explode"/],
      ['/v1/notices/rebalance', 'token-node-b', { instanceId: B.instance }, 403, /not protected by Spot Guard: belongs to group "batch-asg"/],
      ['/v1/anything', 'token-node-a', { instanceId: A.instance }, 404, /no such intake path/],
    ];
    for (const [path, token, body, status, reason] of cases) {
      const answer = await post(path, token, body);
      assert.equal(answer.status, status, `${path} ${token ?? '(no token)'} ${JSON.stringify(body)}: ${answer.body.error}`);
      assert.match(answer.body.error ?? '', reason);
    }
    assert.deepEqual(started, []);
  });

  it('each node gets a few requests a minute; another node is not held up by it', async function () {
    for (let i = 0; i < 3; i++) assert.equal((await post('/v1/notices/rebalance', 'token-node-a', { instanceId: A.instance })).status, 202);
    const limited = await post('/v1/notices/rebalance', 'token-node-a', { instanceId: A.instance });
    assert.deepEqual([limited.status, /more than 3 requests a minute/.test(limited.body.error ?? '')], [429, true]);
    assert.equal((await post('/v1/notices/rebalance', 'token-node-b', { instanceId: B.instance })).status, 403, 'node B is judged on its own');
    now = 20_000; // a third of a minute: one more request
    assert.equal((await post('/v1/notices/rebalance', 'token-node-a', { instanceId: A.instance })).status, 202);
  });
});
