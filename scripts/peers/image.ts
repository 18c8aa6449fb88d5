// The Spot Guard image for the tests: built from the Dockerfile with buildah on the local base scripts/peers.sh makes
// (no Docker engine, no image registry here; ../shared/PEERS.md, "Containers"), tagged with the hash of the build's
// inputs so a warm run finds it and skips the build, and commands run inside it with `buildah run`, as the image's
// user. Every buildah process started here is stopped, and what it leaves removed, when this process ends.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stopOnExit } from './stop-on-exit.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const REPOSITORY = 'localhost/spot-guard';
const DEFAULT_BASE = 'localhost/spot-guard-base:node-24.21.0-npm-11.21.2-bookworm';
const INSTALL = 'run scripts/peers.sh (it installs buildah and mmdebstrap and builds the local base image)';

export interface ImageBuild {
  tag: string;
  /** False when an image of these inputs was there already. */
  built: boolean;
  seconds: number;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The local base image (SPOT_GUARD_BASE_IMAGE, else the one scripts/peers.sh builds); an error if buildah or it is missing. */
export function baseImage(): string {
  const base = process.env.SPOT_GUARD_BASE_IMAGE || DEFAULT_BASE;
  try {
    execFileSync('buildah', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error(`buildah is missing: ${INSTALL}`);
  }
  if (!imageExists(base)) throw new Error(`the base image ${base} is missing: ${INSTALL}`);
  return base;
}

function imageExists(name: string): boolean {
  try {
    execFileSync('buildah', ['inspect', '--type', 'image', name], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * The files that go into the build: the Dockerfile, .dockerignore, and what .dockerignore lets through. It is an
 * allowlist (`*`, then `!path` lines); the files under those paths are the ones git knows or would add.
 */
export function buildInputs(root = ROOT): string[] {
  const lines = readFileSync(join(root, '.dockerignore'), 'utf8').split('\n').map((line) => line.trim());
  const rules = lines.filter((line) => line && !line.startsWith('#'));
  if (rules[0] !== '*' || rules.slice(1).some((rule) => !rule.startsWith('!'))) {
    throw new Error(`.dockerignore: expected an allowlist, "*" then "!path" lines; found ${JSON.stringify(rules)}`);
  }
  const allowed = rules.slice(1).map((rule) => rule.slice(1));
  const listed = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard', '--', ...allowed], { cwd: root, encoding: 'utf8' });
  const files = listed.split('\0').filter((file) => file && existsSync(join(root, file)));
  return [...new Set(['Dockerfile', '.dockerignore', ...files])].sort();
}

/** A hash of the build's inputs (each file's path, executable bit and content) and of the base image's id. */
export function inputsHash(base: string, root = ROOT): string {
  const hash = createHash('sha256');
  hash.update(`base ${execFileSync('buildah', ['inspect', '--type', 'image', '--format', '{{.FromImageID}}', base], { encoding: 'utf8' }).trim()}\0`);
  for (const file of buildInputs(root)) {
    const path = join(root, file);
    hash.update(`${file}\0${statSync(path).mode & 0o111 ? 'x' : '-'}\0`);
    hash.update(readFileSync(path));
    hash.update('\0');
  }
  return hash.digest('hex').slice(0, 16);
}

/** Builds the image unless one of the same inputs exists; older images of the suite's are removed after a build. */
export async function ensureImage(say: (line: string) => void): Promise<ImageBuild> {
  const base = baseImage();
  const tag = `${REPOSITORY}:inputs-${inputsHash(base)}`;
  if (imageExists(tag)) return { tag, built: false, seconds: 0 };
  say(`building ${tag} on ${base} (a cold build downloads the npm dependencies: a minute or two)`);
  const started = Date.now();
  // What a build killed midway leaves: the working containers that were not there before it.
  const containersBefore = new Set(buildahContainers());
  const removeLeftovers = (): void => removeContainers(buildahContainers().filter((id) => !containersBefore.has(id)));
  const args = ['bud', '--isolation', 'chroot', '--build-arg', `BASE=${base}`, '--tag', tag, ROOT];
  const result = await runBuildah(args, 30 * 60_000, say, removeLeftovers);
  if (result.code !== 0) {
    removeLeftovers();
    throw new Error(`buildah bud failed (exit ${result.code ?? 'killed'}):\n${(result.stdout + result.stderr).slice(-4000)}`);
  }
  removeOlderImages(tag);
  return { tag, built: true, seconds: (Date.now() - started) / 1000 };
}

function buildahContainers(): string[] {
  return execFileSync('buildah', ['containers', '--quiet', '--notruncate'], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

function removeContainers(ids: string[]): void {
  for (const id of ids) execFileSync('buildah', ['rm', id], { stdio: 'ignore' });
}

function removeOlderImages(keep: string): void {
  const names = execFileSync('buildah', ['images', '--format', '{{.Name}}:{{.Tag}}'], { encoding: 'utf8' }).split('\n');
  for (const name of names.filter((name) => name.startsWith(`${REPOSITORY}:inputs-`) && name !== keep)) {
    try {
      execFileSync('buildah', ['rmi', name], { stdio: 'ignore' });
    } catch {
      // in use by a working container: left for the next build
    }
  }
}

/** The image's configuration: its user, entry point and default command, and its size as buildah counts it. */
export function imageConfig(tag: string): { user: string; entrypoint: string[]; cmd: string[]; size: string } {
  const [inspected] = JSON.parse(execFileSync('buildah', ['images', '--json', tag], { encoding: 'utf8' })) as { size: string }[];
  const config = JSON.parse(execFileSync('buildah', ['inspect', '--type', 'image', tag], { encoding: 'utf8' })) as {
    OCIv1: { config: { User?: string; Entrypoint?: string[]; Cmd?: string[] } };
  };
  const { User = '', Entrypoint = [], Cmd = [] } = config.OCIv1.config;
  return { user: User, entrypoint: Entrypoint, cmd: Cmd, size: inspected?.size ?? 'unknown' };
}

/** A working container of `tag` to run commands in; removed by `remove()`, or when this process ends. */
export function workingContainer(tag: string): { run: (command: string[], env?: Record<string, string>) => Promise<RunResult>; remove: () => void } {
  const id = execFileSync('buildah', ['from', '--quiet', tag], { encoding: 'utf8' }).trim();
  let removed = false;
  const remove = (): void => {
    if (removed) return;
    removed = true;
    execFileSync('buildah', ['rm', id], { stdio: 'ignore' });
  };
  const run = (command: string[], env: Record<string, string> = {}): Promise<RunResult> => {
    const envArgs = Object.entries(env).flatMap(([name, value]) => ['--env', `${name}=${value}`]);
    return runBuildah(['run', '--isolation', 'chroot', ...envArgs, id, '--', ...command], 120_000, undefined, remove);
  };
  return { run, remove };
}

/**
 * Runs buildah with `args`, killed after `timeoutMs`. `say` gets each line of its output as it comes (and a line every
 * 30 s while it is silent, so a long build is visibly alive); `cleanup` runs if this process ends while it runs.
 */
function runBuildah(args: string[], timeoutMs: number, say: ((line: string) => void) | undefined, cleanup: () => void): Promise<RunResult> {
  const child: ChildProcess = spawn('buildah', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  stopOnExit(child, cleanup);
  const output = { stdout: '', stderr: '' };
  let lastOutput = Date.now();
  const collect = (stream: 'stdout' | 'stderr') => (chunk: Buffer): void => {
    output[stream] += chunk.toString();
    lastOutput = Date.now();
    if (say) for (const line of chunk.toString().split('\n').filter((text) => text.trim())) say(line);
  };
  child.stdout?.on('data', collect('stdout'));
  child.stderr?.on('data', collect('stderr'));
  const started = Date.now();
  const heartbeat = setInterval(() => {
    if (say && Date.now() - lastOutput >= 30_000) say(`still running: ${Math.round((Date.now() - started) / 1000)} s`);
  }, 30_000);
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      clearInterval(heartbeat);
      clearTimeout(timer);
      resolve({ code, ...output });
    });
  });
}
