// Bundles the workflow code once at build time: dist/workflow-bundle.js for Spot Guard's worker, and
// dist/bench-workflow-bundle.js for the benchmark's (its workflows and the naive one). A worker that loads a prebuilt
// bundle starts faster and never runs webpack in production, which alone would cost it a few hundred MB of peak memory.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';

const bundles = [
  { entry: '../workflows/index.js', output: '../workflow-bundle.js' },
  { entry: '../bench/naive/workflows.js', output: '../bench-workflow-bundle.js' },
];

for (const { entry, output } of bundles) {
  const workflowsPath = fileURLToPath(new URL(entry, import.meta.url));
  const bundlePath = fileURLToPath(new URL(output, import.meta.url));
  const { code } = await bundleWorkflowCode({ workflowsPath, logger: new DefaultLogger('WARN') });
  writeFileSync(bundlePath, code);
  console.error(`workflow bundle written to ${bundlePath} (${Math.round(code.length / 1024)} KiB)`);
}
