// The worker's probes (SPOT_GUARD_HEALTH_ADDRESS), for a kubelet or any supervisor:
// - /healthz answers 200 while the process's event loop runs: the loop every activity, the node watch and the intake
//   share, so a loop blocked or starved fails it;
// - /readyz answers 200 only while every Temporal worker of the process is polling (state RUNNING), 503 with their
//   states otherwise: before they start and from SIGTERM on, so a Service stops sending signalers' notices to a
//   worker that is stopping. A worker that fails ends the process (worker/run.ts), which the liveness probe need not
//   catch.
// The Prometheus endpoint is no probe: the SDK's native core serves it from start, whatever the workers' state.
import { createServer, type Server, type ServerResponse } from 'node:http';
import { type Listening, listenOn } from './http-listen.js';

/** `states` gives each Temporal worker's state (Worker.getState()) at the time of the request. */
export async function startHealthServer(address: string, states: () => readonly string[]): Promise<Listening> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path === '/healthz') return answer(res, 200, 'ok');
    if (path !== '/readyz') return answer(res, 404, `no such probe ${JSON.stringify(path)}: expected /healthz or /readyz`);
    const now = states();
    const ready = now.length > 0 && now.every((state) => state === 'RUNNING');
    return answer(res, ready ? 200 : 503, `${ready ? 'ready' : 'not ready'}: workers ${now.join(', ') || 'not created yet'}`);
  });
  return listenOn(server, address);
}

function answer(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'text/plain' });
  res.end(`${text}\n`);
}
