// CPU time by peer, read from /proc: on a machine where the worker, the Temporal dev server, kube-apiserver, etcd,
// kwok and moto share the same cores, it shows which of them a run's wall time went to.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export type CpuSeconds = Record<string, number>;

const roles: [string, RegExp][] = [
  // Spot Guard's worker, or the benchmark's for the naive strategy.
  ['worker', /dist\/(worker\/main|bench\/naive\/worker)\.js/],
  ['temporal dev server', /temporal.*server\s+start-dev/],
  ['kube-apiserver', /kube-apiserver/],
  ['etcd', /(^|\/)etcd(\s|$)/],
  ['kwok and kube-controller-manager', /kwok|kube-controller-manager/],
  ['moto (AWS)', /aws_launcher|moto/],
];

let ticksPerSecond: number | undefined;
function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** User + system CPU seconds so far of every running process of a known role, summed by role. Empty off Linux. */
export function cpuSnapshot(): CpuSeconds {
  const totals: CpuSeconds = {};
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return totals;
  }
  for (const pid of pids) {
    try {
      const commandLine = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      const role = Number(pid) === process.pid ? 'benchmark driver' : roles.find(([, pattern]) => pattern.test(commandLine))?.[0];
      if (!role) continue;
      // The fields after the command name, which may hold spaces and parentheses: utime and stime are the 12th and 13th.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ticks = Number(fields[11]) + Number(fields[12]);
      totals[role] = (totals[role] ?? 0) + ticks / clockTicks();
    } catch {
      // The process ended between listing and reading.
    }
  }
  return totals;
}

/** CPU seconds spent by each role between two snapshots, rounded to 0.1 s; roles that spent nothing are left out. */
export function cpuSpent(before: CpuSeconds, after: CpuSeconds): CpuSeconds {
  const spent: CpuSeconds = {};
  for (const [role, seconds] of Object.entries(after)) {
    const delta = seconds - (before[role] ?? 0);
    if (delta >= 0.05) spent[role] = Number(delta.toFixed(1));
  }
  return spent;
}
