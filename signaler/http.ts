// One small HTTP(S) request helper for the signaler, on node:http and node:https: the global fetch loads undici and
// its WebAssembly parser, about 8 MiB of resident memory on every spot node for two kinds of request.
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

export interface Answer {
  status: number;
  body: string;
}

export class RequestTimeout extends Error {
  override readonly name = 'RequestTimeout';
}

export function send(url: URL, options: { method: 'GET' | 'PUT' | 'POST'; headers?: Record<string, string | number>; body?: string; timeoutMs: number; ca?: Buffer }): Promise<Answer> {
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method, headers: options.headers ?? {}, ...(options.ca ? { ca: options.ca } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    // The whole exchange, not only the idle time between packets: a server that trickles is as stuck as a silent one.
    const timer = setTimeout(() => req.destroy(new RequestTimeout(`no answer within ${options.timeoutMs} ms`)), options.timeoutMs);
    req.on('close', () => clearTimeout(timer));
    req.on('error', reject);
    req.end(options.body);
  });
}
