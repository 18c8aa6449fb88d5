// The signaler's view of the instance metadata service: IMDSv2 only by default (a session token from
// PUT /latest/api/token, sent with every read and refreshed before it expires), and the three reads the signaler needs.
// A 404 on a notice path means "no notice yet"; any other unexpected answer (an error status, a malformed body, a
// timeout) is an ImdsError that names what was read and what came back, for the poll loop to log and survive.
import { type Answer, send } from './http.js';

/** Where IMDS answers on every EC2 instance (link-local). */
export const IMDS_URL = 'http://169.254.169.254';
/** The longest token IMDS issues (6 h): one PUT per 6 hours, refreshed a tenth of its life before it ends. */
const DEFAULT_TOKEN_TTL_SECONDS = 21_600;

export interface ImdsOptions {
  baseUrl?: string;
  tokenTtlSeconds?: number;
  /** Per request; IMDS answers in milliseconds, so a longer wait means something is wrong. */
  timeoutMs?: number;
  /** Fall back to IMDSv1 (no token) when the token is refused. Off unless configured: IMDSv1 invites SSRF. */
  allowImdsV1?: boolean;
  now?: () => number;
}

/** IMDS's `events/recommendations/rebalance` answer. */
export interface RebalanceRecommendation {
  noticeTime: string;
}

/** IMDS's `spot/instance-action` answer: AWS will stop, hibernate or terminate the instance at `time`. */
export interface InstanceAction {
  action: string;
  time: string;
}

export class ImdsError extends Error {
  override readonly name = 'ImdsError';
}

const INSTANCE_ID = /^i-[0-9a-f]{8,17}$/;
const INSTANCE_ACTIONS = new Set(['terminate', 'stop', 'hibernate']);

export class ImdsClient {
  private readonly baseUrl: string;
  private readonly ttlSeconds: number;
  private readonly timeoutMs: number;
  private readonly now: () => number;
  private token: { value: string; refreshAt: number } | 'imdsv1' | undefined;

  constructor(private readonly options: ImdsOptions = {}) {
    this.baseUrl = (options.baseUrl ?? IMDS_URL).replace(/\/+$/, '');
    this.ttlSeconds = options.tokenTtlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS;
    this.timeoutMs = options.timeoutMs ?? 2_000;
    this.now = options.now ?? Date.now;
    if (!Number.isInteger(this.ttlSeconds) || this.ttlSeconds < 1 || this.ttlSeconds > DEFAULT_TOKEN_TTL_SECONDS) {
      throw new RangeError(`IMDS token TTL ${this.ttlSeconds} s: expected a whole number of seconds from 1 to ${DEFAULT_TOKEN_TTL_SECONDS}`);
    }
  }

  async instanceId(): Promise<string> {
    const { body } = await this.read('/latest/meta-data/instance-id', false);
    const id = (body ?? '').trim();
    if (!INSTANCE_ID.test(id)) throw new ImdsError(`IMDS instance-id answered ${JSON.stringify(id.slice(0, 40))}: expected an instance id like i-0123456789abcdef0`);
    return id;
  }

  /** The rebalance recommendation, or undefined while there is none. */
  async rebalanceRecommendation(): Promise<RebalanceRecommendation | undefined> {
    const json = await this.readJson('/latest/meta-data/events/recommendations/rebalance');
    if (json === undefined) return undefined;
    return { noticeTime: isoField(json, 'noticeTime', 'events/recommendations/rebalance') };
  }

  /** The interruption notice (stop, hibernate or terminate at a time), or undefined while there is none. */
  async instanceAction(): Promise<InstanceAction | undefined> {
    const json = await this.readJson('/latest/meta-data/spot/instance-action');
    if (json === undefined) return undefined;
    const action = (json as { action?: unknown }).action;
    if (typeof action !== 'string' || !INSTANCE_ACTIONS.has(action)) {
      throw new ImdsError(`IMDS spot/instance-action answered action ${JSON.stringify(action)}: expected terminate, stop or hibernate`);
    }
    return { action, time: isoField(json, 'time', 'spot/instance-action') };
  }

  private async readJson(path: string): Promise<unknown> {
    const { body } = await this.read(path, true);
    if (body === undefined) return undefined;
    try {
      return JSON.parse(body) as unknown;
    } catch {
      throw new ImdsError(`IMDS ${path} answered a body that is not JSON: ${JSON.stringify(body.slice(0, 80))}`);
    }
  }

  /** A GET with the session token; `body` undefined for a 404 when `missingIsNone`. A refused token is renewed once. */
  private async read(path: string, missingIsNone: boolean): Promise<{ body?: string }> {
    for (let attempt = 1; ; attempt++) {
      const token = await this.sessionToken();
      const response = await this.request('GET', path, token === undefined ? {} : { 'X-aws-ec2-metadata-token': token });
      if (response.status === 200) return { body: response.body };
      if (response.status === 404 && missingIsNone) return {};
      if (response.status === 401 && attempt === 1 && token !== undefined) {
        this.token = undefined; // expired or revoked (IMDS restarted): a new one, once
        continue;
      }
      throw new ImdsError(`IMDS ${path} answered HTTP ${response.status}: ${response.body.slice(0, 80)}`);
    }
  }

  /** The session token; undefined when IMDSv1 was allowed and the token refused (reads go without one). */
  private async sessionToken(): Promise<string | undefined> {
    if (this.token === 'imdsv1') return undefined;
    if (this.token && this.now() < this.token.refreshAt) return this.token.value;
    const response = await this.request('PUT', '/latest/api/token', { 'X-aws-ec2-metadata-token-ttl-seconds': String(this.ttlSeconds) });
    if (response.status === 200 && response.body.trim() !== '') {
      this.token = { value: response.body.trim(), refreshAt: this.now() + this.ttlSeconds * 900 };
      return this.token.value;
    }
    if (this.options.allowImdsV1) {
      this.token = 'imdsv1';
      return undefined;
    }
    throw new ImdsError(`IMDSv2 token refused (HTTP ${response.status}); IMDSv1 is off: set SPOT_GUARD_IMDS_ALLOW_V1=true only if this instance cannot serve IMDSv2`);
  }

  private async request(method: 'GET' | 'PUT', path: string, headers: Record<string, string>): Promise<Answer> {
    try {
      return await send(new URL(`${this.baseUrl}${path}`), { method, headers, timeoutMs: this.timeoutMs });
    } catch (error) {
      throw new ImdsError(`IMDS ${method} ${path} failed: ${(error as Error).message}`);
    }
  }
}

function isoField(json: unknown, field: string, path: string): string {
  const value = (json as Record<string, unknown> | null)?.[field];
  if (typeof value !== 'string' || Number.isNaN(Date.parse(value))) {
    throw new ImdsError(`IMDS ${path} answered ${field} ${JSON.stringify(value)}: expected an ISO 8601 time`);
  }
  return value;
}
