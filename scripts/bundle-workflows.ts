// Bundles the workflow code once at build time (dist/workflow-bundle.js). A worker that loads a prebuilt bundle
// starts faster and never runs webpack in production, which alone would cost it a few hundred MB of peak memory.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';

const workflowsPath = fileURLToPath(new URL('../workflows/index.js', import.meta.url));
const bundlePath = fileURLToPath(new URL('../workflow-bundle.js', import.meta.url));

const { code } = await bundleWorkflowCode({ workflowsPath, logger: new DefaultLogger('WARN') });
writeFileSync(bundlePath, code);
console.error(`workflow bundle written to ${bundlePath} (${Math.round(code.length / 1024)} KiB)`);
