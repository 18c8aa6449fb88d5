import { createServer } from 'node:net';

/**
 * Polls `predicate` (every 200 ms, errors counting as "not yet") until it holds; on timeout the error names what was
 * awaited, with `context()` appended (process logs, for instance).
 */
export async function until(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 60_000, context: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await predicate()) return;
    } catch {
      // not there yet
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}\n${context()}`.trimEnd());
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}
