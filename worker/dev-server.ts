// The embedded Temporal dev server: the `temporal` CLI from the peers cache, with its UI and a SQLite file, so a
// worker started without TEMPORAL_ADDRESS works on a fresh machine and keeps its workflows across restarts.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { Connection } from '@temporalio/client';
import { allSearchAttributeKeys } from '../workflows/shared/search-attributes.js';
import type { DevServerSettings } from './config.js';

export interface DevServer {
  address: string;
  uiUrl: string;
  /** The server's process, for a test harness that must kill it if the test process is interrupted. */
  process: ChildProcess;
  stop(): Promise<void>;
}

const sqlitePragmas = ['journal_mode=wal', 'synchronous=normal'];

export async function startDevServer(settings: DevServerSettings, namespace: string, log: (message: string) => void): Promise<DevServer> {
  if (!existsSync(settings.temporalCli)) {
    throw new Error(
      `the Temporal CLI is not at ${settings.temporalCli}: run scripts/start, or scripts/peers.sh --worker (or set TEMPORAL_ADDRESS to use a Temporal server you run)`,
    );
  }
  mkdirSync(dirname(settings.dbFile), { recursive: true });
  const address = `127.0.0.1:${settings.port}`;
  const args = [
    'server', 'start-dev',
    '--ip', '127.0.0.1',
    '--port', String(settings.port),
    '--ui-port', String(settings.uiPort),
    '--db-filename', settings.dbFile,
    // SQLite's default rollback journal syncs the disk several times per commit, which held the dev server to about
    // 80 workflow starts and 300 signals a second here; a write-ahead log synced at checkpoints does 3.5 times that.
    // It still survives the server process being killed; only a machine crash can lose the last commits.
    ...sqlitePragmas.flatMap((pragma) => ['--sqlite-pragma', pragma]),
    '--namespace', namespace,
    '--log-level', 'error',
    ...(settings.metricsPort ? ['--metrics-port', String(settings.metricsPort)] : []),
    ...allSearchAttributeKeys.flatMap((key) => ['--search-attribute', `${key.name}=Keyword`]),
  ];
  log(`starting the embedded Temporal dev server on ${address} (UI http://127.0.0.1:${settings.uiPort}, data in ${settings.dbFile})`);
  const child: ChildProcess = spawn(settings.temporalCli, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  // Its banner and errors through the worker's log, so that a JSON log stays one object per line.
  for (const stream of [child.stdout, child.stderr]) {
    if (stream) createInterface({ input: stream }).on('line', (line) => line.trim() && log(`Temporal dev server: ${line.trim()}`));
  }
  let exited: string | undefined;
  child.once('exit', (code, signal) => {
    exited = `exited with ${signal ?? `code ${code}`}`;
  });

  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited) throw new Error(`the embedded Temporal dev server ${exited} before it answered on ${address}`);
    try {
      const connection = await Connection.connect({ address, connectTimeout: 1000 });
      await connection.workflowService.getSystemInfo({});
      await connection.close();
      break;
    } catch (error) {
      if (Date.now() > deadline) {
        child.kill('SIGTERM');
        throw new Error(`the embedded Temporal dev server did not answer on ${address} within 60 s: ${(error as Error).message}`, { cause: error });
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  return {
    address,
    uiUrl: `http://127.0.0.1:${settings.uiPort}`,
    process: child,
    async stop() {
      if (exited) return;
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(timer);
    },
  };
}
