// The on-node signaler's footprint: it runs on every spot node, so its steady-state resident memory and CPU while
// polling IMDS every 2 s (AEMM, IMDSv2 only, no notice) are measured over 10 minutes, beside a baseline in the same run:
// a bare Node.js process that only keeps a 2 s timer, sampled the same way. The goal is the Node Termination Handler
// DaemonSet's request: 64 MiB and 50 millicores.
//
//   npm run bench:signaler -- [--seconds 600] [--out bench/results/signaler-footprint.json]
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startAemm } from '../scripts/peers/aemm.js';
import { stopOnExit } from '../scripts/peers/stop-on-exit.js';
import { freePort } from '../scripts/peers/wait.js';
import { SIGNALER_NODE_FLAGS } from '../signaler/node-flags.js';
import { percentile, round } from './stats.js';

const SIGNALER = fileURLToPath(new URL('../signaler/main.js', import.meta.url));
const SAMPLE_MS = 5_000;
/** Start-up (module loading, the first token) is not steady state. */
const WARM_UP_MS = 30_000;
const GOAL = { rssMiB: 64, millicores: 50 };

interface Footprint {
  rssMiB: { p50: number | null; max: number | null };
  millicores: number | null;
}

const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

function sample(pid: number): { rssKiB: number; cpuSeconds: number } {
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  // utime and stime are fields 14 and 15 of /proc/PID/stat, 12 and 13 after the command's closing parenthesis.
  return { rssKiB: Number(rss?.[1] ?? 0), cpuSeconds: (Number(fields[11]) + Number(fields[12])) / ticks };
}

/** Samples both processes every 5 s for `seconds`; the footprint of each after the warm-up. */
async function measure(processes: Record<string, ChildProcess>, seconds: number): Promise<Record<string, Footprint>> {
  const samples: Record<string, { at: number; rssKiB: number; cpuSeconds: number }[]> = {};
  const started = Date.now();
  while (Date.now() - started < seconds * 1000) {
    await new Promise((resolve) => setTimeout(resolve, SAMPLE_MS));
    for (const [name, child] of Object.entries(processes)) {
      if (child.exitCode !== null || !child.pid) throw new Error(`${name} exited with ${child.exitCode}`);
      (samples[name] ??= []).push({ at: Date.now(), ...sample(child.pid) });
    }
  }
  const result: Record<string, Footprint> = {};
  for (const [name, list] of Object.entries(samples)) {
    const steady = list.filter((s) => s.at - started >= WARM_UP_MS);
    const first = steady[0];
    const last = steady.at(-1);
    const rss = steady.map((s) => s.rssKiB / 1024);
    const millicores = first && last && last.at > first.at ? ((last.cpuSeconds - first.cpuSeconds) / ((last.at - first.at) / 1000)) * 1000 : null;
    result[name] = { rssMiB: { p50: round(percentile(rss, 50)), max: round(percentile(rss, 100)) }, millicores: round(millicores, 2) };
  }
  return result;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '600' }, out: { type: 'string' } } });
  const seconds = Number(values.seconds);
  if (!Number.isFinite(seconds) || seconds < 60) throw new Error(`--seconds ${values.seconds}: expected at least 60 (the first 30 s are start-up)`);
  const dir = mkdtempSync(join(tmpdir(), 'spot-guard-footprint-'));
  const aemm = await startAemm({ rebalanceDelaySeconds: null });
  const intake = createServer((_req, res) => res.writeHead(202).end('{}'));
  await new Promise<void>((resolve) => intake.listen(0, '127.0.0.1', resolve));
  writeFileSync(join(dir, 'token'), 'footprint-token\n');
  const spawnTracked = (args: string[], env: NodeJS.ProcessEnv): ChildProcess => {
    const child = spawn(process.execPath, args, { env: { PATH: process.env.PATH, ...env }, stdio: 'ignore' });
    stopOnExit(child);
    return child;
  };
  const processes = {
    signaler: spawnTracked([...SIGNALER_NODE_FLAGS, SIGNALER], {
      SPOT_GUARD_INTAKE_URL: `http://127.0.0.1:${(intake.address() as AddressInfo).port}`,
      SPOT_GUARD_INTAKE_ALLOW_HTTP: 'true',
      SPOT_GUARD_TOKEN_FILE: join(dir, 'token'),
      SPOT_GUARD_IMDS_URL: aemm.url,
      SPOT_GUARD_SIGNALER_HEALTH_ADDRESS: `127.0.0.1:${await freePort()}`,
    }),
    baseline: spawnTracked(['-e', 'setInterval(() => {}, 2000)'], {}),
  };
  try {
    console.log(`[footprint] sampling the signaler (2 s IMDS polls against AEMM) and a bare Node.js baseline every ${SAMPLE_MS / 1000} s for ${seconds} s`);
    const footprint = await measure(processes, seconds);
    const { signaler, baseline } = footprint as { signaler: Footprint; baseline: Footprint };
    const report = {
      at: new Date().toISOString(),
      node: process.version,
      seconds,
      goal: GOAL,
      signaler,
      baseline,
      rssRatioToBaseline: signaler.rssMiB.p50 && baseline.rssMiB.p50 ? round(signaler.rssMiB.p50 / baseline.rssMiB.p50, 2) : null,
      withinGoal: (signaler.rssMiB.max ?? Infinity) <= GOAL.rssMiB && (signaler.millicores ?? Infinity) <= GOAL.millicores,
    };
    console.log(JSON.stringify(report, null, 2));
    if (values.out) writeFileSync(values.out, `${JSON.stringify(report, null, 2)}\n`);
  } finally {
    for (const child of Object.values(processes)) child.kill('SIGTERM');
    intake.close();
    await aemm.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(`[footprint] ${(error as Error).message}`);
  process.exitCode = 1;
});
