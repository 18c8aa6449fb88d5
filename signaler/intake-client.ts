// The signaler's side of the intake: one POST per notice, with the pod's projected ServiceAccount token read fresh
// from its file (the kubelet rotates it) and the intake's certificate checked against the configured CA. A 202 is the
// acknowledgement; anything else is an error for the notice watch to retry with backoff.
import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { NoticeDelivery } from './notice-watch.js';

/** The intake's two requests (served by the worker, worker/intake.ts). */
export const INTAKE_PATHS = { rebalance: '/v1/notices/rebalance', interruption: '/v1/notices/interruption' } as const;
const TIMEOUT_MS = 10_000;

export function intakeDelivery(options: { intakeUrl: string; tokenFile: string; caFile?: string }): NoticeDelivery {
  const send = async (path: string, body: Record<string, string>): Promise<void> => {
    const token = (await readFile(options.tokenFile, 'utf8')).trim();
    if (!token) throw new Error(`the ServiceAccount token file ${options.tokenFile} is empty`);
    const ca = options.caFile ? await readFile(options.caFile) : undefined;
    const { status, text } = await post(new URL(path, `${options.intakeUrl}/`), JSON.stringify(body), token, ca);
    if (status !== 202) throw new Error(`intake answered HTTP ${status}: ${text.slice(0, 200)}`);
  };
  return {
    rebalance: (instanceId) => send(INTAKE_PATHS.rebalance, { instanceId }),
    interruption: (instanceId, notice) => send(INTAKE_PATHS.interruption, { instanceId, action: notice.action, time: notice.time }),
  };
}

function post(url: URL, body: string, token: string, ca: Buffer | undefined): Promise<{ status: number; text: string }> {
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        timeout: TIMEOUT_MS,
        ...(ca ? { ca } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer from the intake within ${TIMEOUT_MS / 1000} s`)));
    req.on('error', reject);
    req.end(body);
  });
}
