// amazon-ec2-metadata-mock (AEMM), the instance metadata service the on-node signaler polls, on a free loopback port.
// Its notices appear after delays counted from its own start, so a test starts one process per scenario; it compares
// whole seconds of the clock, so a notice due after N s is served from between N - 1 and N s on. IMDSv2 only
// by default: a request without a session token gets 401, as the signaler must cope with on a hardened instance.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { aemmPath } from './peers.js';
import { stopOnExit } from './stop-on-exit.js';
import { freePort, until } from './wait.js';

/** A delay AEMM never reaches (ten years): how "no such notice" is said to it. */
const NEVER_SECONDS = 10 * 365 * 24 * 3600;

export interface AemmOptions {
  /** IMDSv2 only (default true); false answers IMDSv1 requests without a token too. */
  imdsv2Only?: boolean;
  /** Seconds from AEMM's start until the rebalance recommendation is served; null: never. Default 0 (AEMM's own). */
  rebalanceDelaySeconds?: number | null;
  /** Seconds from AEMM's start until the spot interruption notice is served; null (default): never. */
  interruptionDelaySeconds?: number | null;
  /** The interruption notice's action (default terminate). */
  interruptionAction?: 'terminate' | 'stop' | 'hibernate';
  /** `/latest/meta-data/instance-id` (AEMM has no flag for it: set through its config file). Default AEMM's i-1234567890abcdef0. */
  instanceId?: string;
}

export interface Aemm {
  /** http://127.0.0.1:PORT, the IMDS endpoint (http://169.254.169.254 on an instance). */
  url: string;
  pid: number;
  /** Its temporary directory (its config file), removed by stop(). */
  dir: string;
  /** When the process was started: its delays count from a moment just after this. */
  startedAt: number;
  /** The last lines AEMM wrote, for a failing test's message. */
  log(): string;
  stop(): Promise<void>;
}

export const AEMM_DEFAULT_INSTANCE_ID = 'i-1234567890abcdef0';

export async function startAemm(options: AemmOptions = {}, attempts = 3): Promise<Aemm> {
  const { imdsv2Only = true, rebalanceDelaySeconds = 0, interruptionDelaySeconds = null, interruptionAction = 'terminate', instanceId } = options;
  const dir = mkdtempSync(join(tmpdir(), 'spot-guard-aemm-'));
  // Always a config file of ours, so a developer's $HOME/aemm-config.json (AEMM's default) changes nothing.
  const config = join(dir, 'aemm-config.json');
  writeFileSync(config, JSON.stringify({ ...(instanceId ? { metadata: { values: { 'instance-id': instanceId } } } : {}), spot: { action: interruptionAction } }));
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const running = run(dir, [
      ...(imdsv2Only ? ['--imdsv2'] : []),
      '--hostname', '127.0.0.1',
      '--port', String(port),
      '--config-file', config,
      '--rebalance-delay-sec', String(rebalanceDelaySeconds ?? NEVER_SECONDS),
      '--mock-delay-sec', String(interruptionDelaySeconds ?? NEVER_SECONDS),
    ]);
    const { child, log, stop } = running;
    try {
      await until(
        `ec2-metadata-mock answering PUT ${url}/latest/api/token`,
        async () => child.exitCode !== null || (await fetch(`${url}/latest/api/token`, { method: 'PUT', headers: { 'X-aws-ec2-metadata-token-ttl-seconds': '60' } })).ok,
        15_000,
        log,
      );
      if (child.exitCode !== null) throw new Error(`ec2-metadata-mock exited with ${child.exitCode} before it answered on ${url}\n${log()}`);
    } catch (error) {
      await stop();
      // Another process can take the port between freePort and AEMM's bind: try another one.
      if (attempt < attempts && /address already in use/.test(log())) continue;
      rmSync(dir, { recursive: true, force: true });
      throw error;
    }
    return {
      url,
      pid: child.pid ?? 0,
      dir,
      startedAt: running.startedAt,
      log,
      async stop() {
        await stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
}

/** One AEMM process in `dir`, killed (and `dir` removed) if this process ends or is interrupted first. */
function run(dir: string, args: string[]): { child: ChildProcess; startedAt: number; log: () => string; stop: () => Promise<void> } {
  // No AEMM_* variables of the caller's (AEMM reads every setting from them too), and no $HOME of theirs.
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.toUpperCase().startsWith('AEMM_')));
  const startedAt = Date.now();
  const child = spawn(aemmPath(), args, { cwd: dir, env: { ...env, HOME: dir }, stdio: ['ignore', 'pipe', 'pipe'] });
  const forget = stopOnExit(child, () => rmSync(dir, { recursive: true, force: true }));
  const lines: string[] = [];
  const keep = (chunk: Buffer): void => {
    lines.push(chunk.toString());
    if (lines.length > 100) lines.splice(0, 50);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    startedAt,
    log: () => `--- ec2-metadata-mock ${args.join(' ')}\n${lines.join('')}`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.kill('SIGTERM');
        await exited;
        clearTimeout(timer);
      }
      forget();
    },
  };
}
