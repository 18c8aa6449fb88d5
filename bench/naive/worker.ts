// The benchmark's worker for the naive strategy: Spot Guard's worker (worker/run.ts, same configuration, same task
// queues) with the naive workflow in its bundle and describeScaleOut among its activities. The production worker
// (worker/main.ts) has neither. Started by bench/mass-interruption.ts; `npm run build` makes its bundle.
import { fileURLToPath } from 'node:url';
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { runWorkerProcess } from '../../worker/run.js';
import { createNaiveActivities } from './activities.js';

runWorkerProcess({
  workflowBundlePath: fileURLToPath(new URL('../../bench-workflow-bundle.js', import.meta.url)),
  // Without a build's bundle (dist/bench-workflow-bundle.js), bundled at start.
  workflowsPath: fileURLToPath(new URL('./workflows.js', import.meta.url)),
  // The same region and endpoint as the worker's own client: both read them from the environment.
  extraActivities: createNaiveActivities(new AutoScalingClient({})),
});
