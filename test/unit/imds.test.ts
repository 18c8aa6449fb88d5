// The signaler's IMDS client against a small IMDSv2-only stand-in over HTTP: the token is asked for once and renewed
// before it ends or when refused, a missing notice is no notice, and every malformed answer, error status and timeout
// is an ImdsError that says what came back. (The real AEMM is in the signaler's peer test.)
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ImdsClient, ImdsError } from '../../signaler/imds.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

describe('IMDS client (signaler, no AWS)', function () {
  let server: Server;
  let baseUrl: string;
  let tokens = 0;
  let valid = new Set<string>();
  const answers = new Map<string, Handler>();

  before(async function () {
    server = createServer((req, res) => {
      if (req.method === 'PUT' && req.url === '/latest/api/token') {
        const token = `token-${++tokens}`;
        valid.add(token);
        res.end(token);
        return;
      }
      if (!valid.has(String(req.headers['x-aws-ec2-metadata-token']))) {
        res.statusCode = 401;
        res.end('Unauthorized');
        return;
      }
      const answer = answers.get(req.url ?? '');
      if (answer) answer(req, res);
      else {
        res.statusCode = 404;
        res.end('<html>Not Found</html>');
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async function () {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  beforeEach(function () {
    answers.clear();
    tokens = 0;
    valid = new Set();
  });

  const json = (body: unknown): Handler => (_req, res) => res.end(JSON.stringify(body));

  it('reads the instance id and notices with one token; no notice yet is undefined', async function () {
    answers.set('/latest/meta-data/instance-id', (_req, res) => res.end('i-0123456789abcdef0'));
    const imds = new ImdsClient({ baseUrl });
    assert.equal(await imds.instanceId(), 'i-0123456789abcdef0');
    assert.equal(await imds.rebalanceRecommendation(), undefined);
    answers.set('/latest/meta-data/events/recommendations/rebalance', json({ noticeTime: '2026-12-02T10:00:00Z' }));
    answers.set('/latest/meta-data/spot/instance-action', json({ action: 'terminate', time: '2026-12-02T10:02:00Z' }));
    assert.deepEqual(await imds.rebalanceRecommendation(), { noticeTime: '2026-12-02T10:00:00Z' });
    assert.deepEqual(await imds.instanceAction(), { action: 'terminate', time: '2026-12-02T10:02:00Z' });
    assert.equal(tokens, 1, 'one token for every read');
  });

  it('renews the token a tenth of its life before it ends, and at once when IMDS refuses it', async function () {
    answers.set('/latest/meta-data/instance-id', (_req, res) => res.end('i-0123456789abcdef0'));
    let now = 0;
    const imds = new ImdsClient({ baseUrl, tokenTtlSeconds: 100, now: () => now });
    await imds.instanceId();
    now = 89_000;
    await imds.instanceId();
    assert.equal(tokens, 1);
    now = 91_000;
    await imds.instanceId();
    assert.equal(tokens, 2, 'renewed at 90 % of its life');
    valid.clear(); // IMDS forgot its tokens (restarted)
    assert.equal(await imds.instanceId(), 'i-0123456789abcdef0');
    assert.equal(tokens, 3);
  });

  it('malformed answers, error statuses and a hanging IMDS are ImdsErrors that say what came back', async function () {
    const imds = new ImdsClient({ baseUrl, timeoutMs: 300 });
    answers.set('/latest/meta-data/events/recommendations/rebalance', (_req, res) => res.end('{"noticeTime": '));
    await assert.rejects(imds.rebalanceRecommendation(), (e: unknown) => e instanceof ImdsError && /not JSON/.test(e.message));
    answers.set('/latest/meta-data/events/recommendations/rebalance', json({ noticeTime: 'soon' }));
    await assert.rejects(imds.rebalanceRecommendation(), (e: unknown) => e instanceof ImdsError && /noticeTime "soon": expected an ISO 8601 time/.test(e.message));
    answers.set('/latest/meta-data/spot/instance-action', json({ action: 'explode', time: '2026-12-02T10:02:00Z' }));
    await assert.rejects(imds.instanceAction(), (e: unknown) => e instanceof ImdsError && /action "explode": expected terminate, stop or hibernate/.test(e.message));
    answers.set('/latest/meta-data/spot/instance-action', (_req, res) => {
      res.statusCode = 503;
      res.end('Service Unavailable');
    });
    await assert.rejects(imds.instanceAction(), (e: unknown) => e instanceof ImdsError && /HTTP 503/.test(e.message));
    answers.set('/latest/meta-data/instance-id', () => undefined); // never answers
    await assert.rejects(imds.instanceId(), (e: unknown) => e instanceof ImdsError && /no answer within 300 ms/.test(e.message));
    answers.set('/latest/meta-data/instance-id', (_req, res) => res.end('<html>oops</html>'));
    await assert.rejects(imds.instanceId(), (e: unknown) => e instanceof ImdsError && /expected an instance id/.test(e.message));
  });

  it('IMDSv1 only when allowed: a refused token is an error naming the setting', async function () {
    const refusing = createServer((req, res) => {
      res.statusCode = req.method === 'PUT' ? 403 : 200;
      res.end(req.method === 'PUT' ? 'Forbidden' : 'i-0123456789abcdef0');
    });
    await new Promise<void>((resolve) => refusing.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(refusing.address() as AddressInfo).port}`;
    try {
      await assert.rejects(new ImdsClient({ baseUrl: url }).instanceId(), (e: unknown) => e instanceof ImdsError && /IMDSv2 token refused \(HTTP 403\).*SPOT_GUARD_IMDS_ALLOW_V1/.test(e.message));
      assert.equal(await new ImdsClient({ baseUrl: url, allowImdsV1: true }).instanceId(), 'i-0123456789abcdef0');
    } finally {
      refusing.closeAllConnections();
      await new Promise((resolve) => refusing.close(resolve));
    }
  });

  it('a token TTL out of range is refused, naming it', function () {
    assert.throws(() => new ImdsClient({ tokenTtlSeconds: 0 }), /IMDS token TTL 0 s: expected a whole number of seconds from 1 to 21600/);
  });
});
