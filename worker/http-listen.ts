// Listening on a configured "ip:port" (IPv6 in brackets, as config.ts's isBindAddress takes it), for the worker's
// HTTP servers (the intake, the probes): resolves once listening, with the port bound and a close() for shutdown that
// also ends the connections kept alive.
import type { Server } from 'node:http';

export interface Listening {
  port: number;
  close(): Promise<void>;
}

export async function listenOn(server: Server, address: string): Promise<Listening> {
  const separator = address.lastIndexOf(':');
  const host = address.slice(0, separator).replace(/^\[|\]$/g, '');
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(address.slice(separator + 1)), host, () => resolve());
  });
  const bound = server.address();
  return {
    port: typeof bound === 'object' && bound ? bound.port : 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
