// The Temporal dev server for the real-peer tests and the benchmark, on ports picked free. Its internal services pick
// free ports of their own as it starts, and once in a while one of them takes the port just picked for it (seen in
// the benchmark as "bind: address already in use" and the server exiting); it is then started again on other ports.
import { rmSync } from 'node:fs';
import type { DevServerSettings } from '../../worker/config.js';
import { type DevServer, startDevServer } from '../../worker/dev-server.js';
import { temporalCliPath } from './peers.js';
import { stopOnExit } from './stop-on-exit.js';
import { freePort } from './wait.js';

export async function startDevServerOnFreePorts(
  dbFile: string,
  { pickPort = freePort, attempts = 3 }: { pickPort?: () => Promise<number>; attempts?: number } = {},
): Promise<{ server: DevServer; settings: DevServerSettings }> {
  for (let attempt = 1; ; attempt++) {
    const [port, uiPort, metricsPort] = [await pickPort(), await pickPort(), await pickPort()];
    const settings: DevServerSettings = { temporalCli: temporalCliPath(), port, uiPort, metricsPort, dbFile };
    try {
      const server = await startDevServer(settings, 'default', () => undefined);
      stopOnExit(server.process);
      return { server, settings };
    } catch (error) {
      if (attempt >= attempts || !/before it answered/.test((error as Error).message)) throw error;
      // The server died while starting: its database holds nothing yet.
      for (const suffix of ['', '-wal', '-shm']) rmSync(dbFile + suffix, { force: true });
    }
  }
}
