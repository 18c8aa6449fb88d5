// The real-peer tests' and the benchmark's Temporal dev server start (scripts/peers/dev-server.ts): a server that dies
// while starting because one of its ports was taken is started again on others, and any other failure is not retried.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import { startDevServerOnFreePorts } from '../scripts/peers/dev-server.js';
import { freePort } from '../scripts/peers/wait.js';

describe('the test stack\'s Temporal dev server', function () {
  this.timeout(120_000);
  const dir = mkdtempSync(join(tmpdir(), 'spot-guard-dev-server-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('dies while starting on a port already taken, and is started again on other ports', async function () {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const takenPort = (taken.address() as AddressInfo).port;
    const picked: number[] = [];
    const pickPort = async (): Promise<number> => {
      const port = picked.length === 0 ? takenPort : await freePort();
      picked.push(port);
      return port;
    };
    try {
      const { server, settings } = await startDevServerOnFreePorts(join(dir, 'retried.sqlite'), { pickPort });
      try {
        assert.equal(picked.length, 6, 'three ports for the first attempt, three for the second');
        assert.notEqual(settings.port, takenPort);
        const connection = await Connection.connect({ address: server.address });
        await connection.workflowService.getSystemInfo({});
        await connection.close();
      } finally {
        await server.stop();
      }
    } finally {
      taken.close();
    }
  });

  it('gives up after its attempts, saying the server exited before it answered', async function () {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const takenPort = (taken.address() as AddressInfo).port;
    try {
      await assert.rejects(
        startDevServerOnFreePorts(join(dir, 'refused.sqlite'), { pickPort: async () => takenPort, attempts: 2 }),
        /the embedded Temporal dev server exited with code \d+ before it answered on 127\.0\.0\.1:\d+/,
      );
    } finally {
      taken.close();
    }
  });
});
