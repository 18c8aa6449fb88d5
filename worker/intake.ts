// The intake: where an on-node signaler reports a notice for its own instance, and nothing else. A spot node can speak
// only for itself: the request carries the signaler pod's projected ServiceAccount token (its own audience,
// short-lived); a TokenReview says whose it is and which pod and node it was issued for; that pod must be on that node,
// the node's providerID must name the instance the request claims, and the instance must be in the protected spot
// group. Only then does the intake start the rebalance workflow or deliver the interruption notice (both idempotent).
// Anything else gets a 4xx with the reason and changes nothing; each node gets a few requests a minute.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { instanceIdFromProviderId } from '../activities/kubernetes.js';
import { INTAKE_PATHS } from '../signaler/intake-client.js';

type NoticeKind = keyof typeof INTAKE_PATHS;

/** What a TokenReview said about a token. */
export interface ReviewedToken {
  authenticated: boolean;
  error?: string;
  audiences: string[];
  username?: string;
  podName?: string;
  podUid?: string;
  nodeName?: string;
}

export interface IntakeDeps {
  reviewToken(token: string, audience: string): Promise<ReviewedToken>;
  readPod(namespace: string, name: string): Promise<{ uid?: string; nodeName?: string } | undefined>;
  readNode(name: string): Promise<{ providerID?: string } | undefined>;
  /** Why the instance is not in a protected spot group, or the group it is in; throws when that cannot be told now. */
  verifyProtected(instanceId: string): Promise<Protection>;
  /** `spotAsgName`: the protected group the check found the instance in, named in the workflow's summary. */
  rebalance(input: { instanceId: string; nodeName: string }, spotAsgName: string): Promise<{ workflowId: string }>;
  interruption(input: { instanceId: string; nodeName: string }, notice: { action: string; time: string }, spotAsgName: string): Promise<{ workflowId: string }>;
}

/** The intake's check of an instance: why it is refused, or the protected spot group it is in. */
export type Protection = { refused: string } | { spotAsgName: string };

export interface IntakeSettings {
  audience: string;
  /** The signaler's ServiceAccount, `<namespace>/<name>`: the only one whose tokens are taken. */
  signalerServiceAccount: string;
  requestsPerNodePerMinute: number;
}

export interface IntakeLog {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

/** A request the intake refuses: its status and the reason, sent back as JSON. */
export class Refusal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const MAX_BODY_BYTES = 4096;
const INSTANCE_ACTIONS = new Set(['terminate', 'stop', 'hibernate']);

export function intakeHandler(deps: IntakeDeps, settings: IntakeSettings, log: IntakeLog, now: () => number = Date.now): (req: IncomingMessage, res: ServerResponse) => void {
  const limiter = new PerNodeLimiter(settings.requestsPerNodePerMinute, now);
  return (req, res) => {
    handle(req, deps, settings, limiter).then(
      (answer) => {
        log.info('notice taken', { path: req.url, ...answer });
        reply(res, 202, answer);
      },
      (error: unknown) => {
        // The details of an internal failure stay in the log: the caller may not be who it claims.
        const refusal = error instanceof Refusal ? error : new Refusal(503, 'could not act on the notice now: try again');
        log.warn('intake request refused', { status: refusal.status, reason: refusal.message, ...(error instanceof Refusal ? {} : { error: (error as Error).message }), path: req.url });
        reply(res, refusal.status, { error: refusal.message });
      },
    );
  };
}

async function handle(req: IncomingMessage, deps: IntakeDeps, settings: IntakeSettings, limiter: PerNodeLimiter): Promise<Record<string, unknown>> {
  const kind = noticeKind(req);
  const token = bearerToken(req);
  const body = await readJsonBody(req);
  // The whole request is checked before anything is asked of the Kubernetes API or AWS.
  const instanceId = requireString(body, 'instanceId');
  const notice = kind === 'interruption' ? interruptionOf(body) : undefined;
  const node = await authenticatedNode(token, deps, settings);
  limiter.take(node);
  await requireInstanceOfNode(deps, node, instanceId);
  const protection = await deps.verifyProtected(instanceId);
  if ('refused' in protection) throw new Refusal(403, `instance ${instanceId} is not protected by Spot Guard: ${protection.refused}`);
  const input = { instanceId, nodeName: node };
  const { spotAsgName } = protection;
  return { ...(notice ? await deps.interruption(input, notice, spotAsgName) : await deps.rebalance(input, spotAsgName)), ...input };
}

function interruptionOf(body: Record<string, unknown>): { action: string; time: string } {
  const action = requireString(body, 'action');
  const time = requireString(body, 'time');
  if (!INSTANCE_ACTIONS.has(action)) throw new Refusal(400, `action ${JSON.stringify(action)}: expected terminate, stop or hibernate`);
  if (Number.isNaN(Date.parse(time))) throw new Refusal(400, `time ${JSON.stringify(time)}: expected an ISO 8601 time`);
  return { action, time };
}

function noticeKind(req: IncomingMessage): NoticeKind {
  const path = (req.url ?? '').split('?')[0];
  const kind = (Object.keys(INTAKE_PATHS) as NoticeKind[]).find((k) => INTAKE_PATHS[k] === path);
  if (!kind) throw new Refusal(404, `no such intake path ${JSON.stringify(path)}: expected ${Object.values(INTAKE_PATHS).join(' or ')}`);
  if (req.method !== 'POST') throw new Refusal(405, `${req.method ?? '?'} ${path}: expected POST`);
  return kind;
}

function bearerToken(req: IncomingMessage): string {
  const match = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
  if (!match?.[1]) throw new Refusal(401, 'no bearer token: expected "Authorization: Bearer <the signaler pod\'s projected ServiceAccount token>"');
  return match[1];
}

/** The node whose signaler pod the token was issued for, after every check on the token and the pod. */
async function authenticatedNode(token: string, deps: IntakeDeps, settings: IntakeSettings): Promise<string> {
  const review = await deps.reviewToken(token, settings.audience);
  if (!review.authenticated) throw new Refusal(401, `token refused by the Kubernetes API: ${review.error ?? 'not authenticated'}`);
  if (!review.audiences.includes(settings.audience)) throw new Refusal(401, `token not issued for the audience "${settings.audience}"`);
  const [namespace, name] = settings.signalerServiceAccount.split('/');
  if (review.username !== `system:serviceaccount:${namespace}:${name}`) {
    throw new Refusal(403, `token of ${review.username ?? 'an unknown user'}: only the signaler's ServiceAccount ${settings.signalerServiceAccount} may report notices`);
  }
  if (!review.podName || !review.nodeName) throw new Refusal(403, 'token not bound to a pod on a node: expected a projected ServiceAccount token of the signaler pod');
  const pod = await deps.readPod(namespace ?? '', review.podName);
  if (!pod || pod.uid !== review.podUid) throw new Refusal(403, `pod ${namespace}/${review.podName} the token was issued for is gone`);
  if (pod.nodeName !== review.nodeName) throw new Refusal(403, `pod ${namespace}/${review.podName} runs on ${pod.nodeName ?? 'no node'}, not on ${review.nodeName}`);
  return review.nodeName;
}

async function requireInstanceOfNode(deps: IntakeDeps, nodeName: string, instanceId: string): Promise<void> {
  const node = await deps.readNode(nodeName);
  const own = instanceIdFromProviderId(node?.providerID);
  if (own !== instanceId) {
    throw new Refusal(403, `node ${nodeName} is instance ${own ?? '(no providerID)'}: a signaler may report only its own instance, not ${instanceId}`);
  }
}

async function readJsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new Refusal(413, `body larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    const body = JSON.parse(text) as unknown;
    if (typeof body === 'object' && body !== null && !Array.isArray(body)) return body as Record<string, unknown>;
  } catch {
    // answered below
  }
  throw new Refusal(400, `body ${JSON.stringify(text.slice(0, 60))} is not a JSON object: expected {"instanceId": "i-…"} (and "action", "time" for an interruption notice)`);
}

function requireString(body: Record<string, unknown>, field: string): string {
  const value = body[field];
  if (typeof value !== 'string' || value === '') throw new Refusal(400, `"${field}" ${JSON.stringify(value)}: expected a non-empty string`);
  return value;
}

function reply(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

/** A token bucket per node: a signaler retries with backoff, so a node asking more often than this is misbehaving. */
class PerNodeLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly perMinute: number,
    private readonly now: () => number,
  ) {}

  take(node: string): void {
    const at = this.now();
    const bucket = this.buckets.get(node) ?? { tokens: this.perMinute, at };
    bucket.tokens = Math.min(this.perMinute, bucket.tokens + ((at - bucket.at) / 60_000) * this.perMinute);
    bucket.at = at;
    this.buckets.set(node, bucket);
    if (bucket.tokens < 1) throw new Refusal(429, `node ${node} sent more than ${this.perMinute} requests a minute: try again later`);
    bucket.tokens--;
  }
}
