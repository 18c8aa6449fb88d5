// The signaler's side of the intake: one POST per notice, with the pod's projected ServiceAccount token read fresh
// from its file (the kubelet rotates it) and the intake's certificate checked against the configured CA. A 202 is the
// acknowledgement; anything else is an error for the notice watch to retry with backoff.
import { readFile } from 'node:fs/promises';
import { send } from './http.js';
import type { NoticeDelivery } from './notice-watch.js';

/** The intake's two requests (served by the worker, worker/intake.ts). */
export const INTAKE_PATHS = { rebalance: '/v1/notices/rebalance', interruption: '/v1/notices/interruption' } as const;
const TIMEOUT_MS = 10_000;
const REFUSED_RETRY_MS = 10 * 60_000;

export function intakeDelivery(options: { intakeUrl: string; tokenFile: string; caFile?: string }): NoticeDelivery {
  const post = async (path: string, body: Record<string, string>): Promise<void> => {
    const token = (await readFile(options.tokenFile, 'utf8')).trim();
    if (!token) throw new Error(`the ServiceAccount token file ${options.tokenFile} is empty`);
    const ca = options.caFile ? await readFile(options.caFile) : undefined;
    const text = JSON.stringify(body);
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) };
    const answer = await send(new URL(path, `${options.intakeUrl}/`), { method: 'POST', headers, body: text, timeoutMs: TIMEOUT_MS, ...(ca ? { ca } : {}) });
    if (answer.status === 202) return;
    // A refusal (4xx but "too many") will not change by itself soon: asked again every 10 minutes, not every 30 s.
    const refused = answer.status >= 400 && answer.status < 500 && answer.status !== 429 && answer.status !== 408;
    throw Object.assign(new Error(`intake answered HTTP ${answer.status}: ${answer.body.slice(0, 200)}`), refused ? { retryAfterMs: REFUSED_RETRY_MS } : {});
  };
  return {
    rebalance: (instanceId) => post(INTAKE_PATHS.rebalance, { instanceId }),
    interruption: (instanceId, notice) => post(INTAKE_PATHS.interruption, { instanceId, action: notice.action, time: notice.time }),
  };
}
