// The Spot Guard worker (`npm start`): validates its configuration, connects to Temporal (or starts the embedded dev
// server), and runs the workflows and activities until SIGTERM/SIGINT, when it finishes the tasks in hand and exits.
// Its body is worker/run.ts, shared with the benchmark's worker.
import { runWorkerProcess } from './run.js';

runWorkerProcess();
