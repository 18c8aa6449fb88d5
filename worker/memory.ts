// How much memory the worker holds. Node sizes each V8 heap (the main thread's and the two workflow threads') from the
// memory it finds: a pod's limit, or else the whole machine. On a large machine without a limit V8 collects lazily (a
// heap may grow to four times its live data, a young generation to 128 MiB), and glibc gives each of the SDK core's
// many threads an allocator arena of its own: a wave of 500 nodes took the worker to 735-801 MiB, while its three
// heaps' live data stayed under 190 MB.
// Three settings keep it compact. Two must be there when the process starts, so they are part of how it is launched:
// 8 MiB semi-spaces (the main thread's heap is configured before any code runs) and two allocator arenas. The third,
// the growth factor, V8 reads at every full collection, so the worker sets it once it knows whether it has a limit.
import { totalmem } from 'node:os';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';

/** The Node flags the worker is started with: `npm start`, the tests and the benchmark all use them. */
export const WORKER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=8'];

/** The environment the worker is started with, unless already set: `npm start`, the tests and the benchmark. */
export const WORKER_LAUNCH_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' };

/** Growth past live data at which a heap is collected, when the worker finds no memory limit. */
export const GROWTH_PERCENT_WITHOUT_LIMIT = 20;

/** `auto`: GROWTH_PERCENT_WITHOUT_LIMIT without a memory limit, V8's own factor under one; `off`: always V8's own. */
export type HeapGrowthSetting = 'auto' | 'off' | number;

/** The memory limit Node sized the heaps from (a cgroup's, below the machine's memory), or undefined. */
export function memoryLimitBytes(): number | undefined {
  const limit = process.constrainedMemory();
  return limit > 0 && limit < totalmem() ? limit : undefined;
}

/** The percent to collect at, or undefined to leave V8's own factor (1.1 to 4, from its heap limit and GC speed). */
export function heapGrowthPercent(setting: HeapGrowthSetting, limitBytes: number | undefined): number | undefined {
  if (setting === 'off') return undefined;
  if (setting === 'auto') return limitBytes === undefined ? GROWTH_PERCENT_WITHOUT_LIMIT : undefined;
  return setting;
}

/**
 * Sets the growth factor for every V8 heap of the process: the main thread's from its next full collection, and the
 * workflow threads' if called before the SDK creates them (a thread copies the process's V8 flags when it starts).
 */
export function applyHeapGrowth(percent: number): void {
  if (!Number.isInteger(percent) || percent < 1) throw new RangeError(`heap growth ${percent} is not a whole percent above 0`);
  setFlagsFromString(`--heap-growing-percent=${percent}`);
}

/** What of WORKER_NODE_FLAGS and WORKER_LAUNCH_ENV the process was started without (a value of one's own counts). */
export function launchSettingsMissing(
  execArgv: readonly string[] = process.execArgv,
  env: Record<string, string | undefined> = process.env,
): string[] {
  const flags = [...execArgv, ...(env.NODE_OPTIONS ?? '').split(/\s+/)];
  const flagName = (flag: string): string => flag.split('=')[0].replaceAll('_', '-');
  return [
    ...WORKER_NODE_FLAGS.filter((wanted) => !flags.some((flag) => flagName(flag) === flagName(wanted))),
    ...Object.entries(WORKER_LAUNCH_ENV).filter(([name]) => env[name] === undefined).map(([name, value]) => `${name}=${value}`),
  ];
}

/** The worker's start line about memory: the limit it found, how its heaps collect, and what to change if anything. */
export function memoryNote(limitBytes: number | undefined, growthPercent: number | undefined, missing: readonly string[]): string {
  const heapMiB = Math.round(getHeapStatistics().heap_size_limit / 2 ** 20);
  const parts = [
    limitBytes === undefined
      ? `no memory limit: V8 heap limit ${heapMiB} MiB per thread, sized from the machine`
      : `memory limit ${Math.round(limitBytes / 2 ** 20)} MiB: V8 heap limit ${heapMiB} MiB per thread`,
    growthPercent === undefined
      ? "heaps collected at V8's own growth factor"
      : `heaps collected when they grow ${growthPercent}% past their live data (SPOT_GUARD_HEAP_GROWTH_PERCENT)`,
  ];
  if (missing.length > 0) {
    const launch = `${Object.entries(WORKER_LAUNCH_ENV).map(([name, value]) => `${name}=${value}`).join(' ')} node ${WORKER_NODE_FLAGS.join(' ')} dist/worker/main.js`;
    parts.push(`started without ${missing.join(' and ')}, so the worker may hold more memory (start it with npm start, or ${launch})`);
  }
  if (limitBytes === undefined) parts.push("give the worker a memory limit in production (a pod's resources.limits.memory, 640Mi for waves of 500 nodes)");
  return parts.join('; ');
}
