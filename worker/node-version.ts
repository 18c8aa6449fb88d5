// The Node.js version check, run before anything that needs a newer Node: on an older one the worker's dependencies
// fail as they load (undici's zstd on Node 20) with a stack trace that names neither the version nor the fix.
// Plain code with no imports but node:fs, so it runs on any Node.js that can load an ES module.
import { readFileSync } from 'node:fs';

/** package.json's engines.node, read at run time so that one place says which versions are supported. */
function requiredRange(): string | undefined {
  try {
    const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { engines?: { node?: string } };
    return manifest.engines?.node;
  } catch {
    return undefined;
  }
}

const parts = (version: string): number[] => version.split('.').map((part) => Number.parseInt(part, 10) || 0);

/** Why this Node.js cannot run the worker, in one line with the command that provides one; undefined: it can. */
export function unsupportedNode(version: string, range = requiredRange(), executable = process.execPath): string | undefined {
  const minimum = /^>=\s*v?(\d+(?:\.\d+){0,2})$/.exec(range?.trim() ?? '')?.[1];
  if (!minimum) return undefined; // no range, or one this check does not read: let the worker try
  const [have, need] = [parts(version), parts(minimum)];
  for (let i = 0; i < 3; i++) {
    if ((have[i] ?? 0) > (need[i] ?? 0)) return undefined;
    if ((have[i] ?? 0) < (need[i] ?? 0)) {
      return `Spot Guard needs Node.js ${range} (package.json "engines"), but this is Node.js ${version} (${executable}): run scripts/start, which installs the pinned Node.js 24 and puts it first on PATH (or put a Node.js ${range} first on PATH and run npm start again)`;
    }
  }
  return undefined;
}
