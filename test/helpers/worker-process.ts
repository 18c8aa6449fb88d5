// The environment of a real worker process started by a test against its own embedded Temporal dev server (no
// TEMPORAL_ADDRESS), on free ports and with its data in `dataDir`, as `npm start` would run it.
import { join } from 'node:path';
import { WORKER_LAUNCH_ENV } from '../../worker/memory.js';
import { temporalCliPath } from '../../scripts/peers/peers.js';

export function embeddedDevServerWorkerEnv(ports: { port: number; uiPort: number }, dataDir: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    ...WORKER_LAUNCH_ENV,
    TEMPORAL_ADDRESS: '',
    SPOT_ASG_NAME: 'spot',
    ON_DEMAND_ASG_NAME: 'od',
    AWS_REGION: 'us-east-1',
    SPOT_GUARD_TEMPORAL_CLI: temporalCliPath(),
    SPOT_GUARD_DEV_SERVER_PORT: String(ports.port),
    SPOT_GUARD_DEV_UI_PORT: String(ports.uiPort),
    SPOT_GUARD_DEV_DB: join(dataDir, 'temporal.sqlite'),
  };
}
