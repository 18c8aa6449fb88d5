// The Spot Guard worker (`npm start`): validates its configuration, connects to Temporal (or starts the embedded dev
// server), and runs the workflows and activities until SIGTERM/SIGINT, when it finishes the tasks in hand and exits.
// Its body is worker/run.ts, shared with the benchmark's worker; it is loaded only once the Node.js version is known
// to run it, so an old Node gets one line naming the version needed instead of a dependency's stack trace.
import { unsupportedNode } from './node-version.js';

const unsupported = unsupportedNode(process.versions.node);
if (unsupported) {
  console.error(`[spot-guard] ${unsupported}`);
  process.exit(2);
}
const { runWorkerProcess } = await import('./run.js');
runWorkerProcess();
