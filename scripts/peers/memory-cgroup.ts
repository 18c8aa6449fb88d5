// A memory cgroup for the worker under test: the limit a pod's `resources.limits.memory` sets, enforced by the kernel
// as in a pod, and seen by Node, which sizes its V8 heaps from it (process.constrainedMemory()). A child of this
// process's own memory cgroup (v1 memory controller, or v2 with the memory controller enabled).
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface MemoryCgroup {
  dir: string;
  limitMiB: number;
  /** The most memory the group has used (the kernel's peak: what a pod limit is checked against), in MiB. */
  peakMiB(): number | undefined;
  /** Processes of the group the kernel killed for running out of memory. */
  oomKills(): number | undefined;
  remove(): void;
}

const read = (file: string): string | undefined => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
};

/** Where the kernel says this process's cgroups are; a test points these at a tree of its own. */
export interface CgroupPaths {
  selfCgroup: string;
  cgroupRoot: string;
}

const HOST: CgroupPaths = { selfCgroup: '/proc/self/cgroup', cgroupRoot: '/sys/fs/cgroup' };

function ownCgroupDir(paths: CgroupPaths): { dir: string; version: 1 | 2 } | undefined {
  const lines = (read(paths.selfCgroup) ?? '').split('\n');
  const v1 = lines.map((line) => /^\d+:([^:]*):(.*)$/.exec(line)).find((m) => m?.[1]?.split(',').includes('memory'));
  const v1Root = join(paths.cgroupRoot, 'memory');
  if (v1?.[2] !== undefined && existsSync(v1Root)) return { dir: join(v1Root, v1[2]), version: 1 };
  const v2 = lines.map((line) => /^0::(.*)$/.exec(line)).find(Boolean);
  if (v2?.[1] !== undefined) {
    const dir = join(paths.cgroupRoot, v2[1]);
    if ((read(join(dir, 'cgroup.subtree_control')) ?? '').split(/\s+/).includes('memory')) return { dir, version: 2 };
  }
  return undefined;
}

export function createMemoryCgroup(limitMiB: number, paths: CgroupPaths = HOST): MemoryCgroup {
  const own = ownCgroupDir(paths);
  if (!own) {
    throw new Error(
      '--worker-memory-limit needs a memory cgroup this process may create children in (cgroup v1 with the memory controller, or v2 with memory in cgroup.subtree_control); none found in /proc/self/cgroup',
    );
  }
  const dir = join(own.dir, `spot-guard-worker-${process.pid}`);
  const bytes = String(limitMiB * 1024 * 1024);
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, own.version === 1 ? 'memory.limit_in_bytes' : 'memory.max'), bytes);
  } catch (error) {
    throw new Error(`--worker-memory-limit: cannot create the memory cgroup ${dir} (${(error as Error).message}): run as a user who may, or without the option`, { cause: error });
  }
  const number = (file: string, pattern?: RegExp): number | undefined => {
    const text = read(join(dir, file));
    if (text === undefined) return undefined;
    const value = Number(pattern ? pattern.exec(text)?.[1] : text.trim());
    return Number.isFinite(value) ? value : undefined;
  };
  return {
    dir,
    limitMiB,
    peakMiB() {
      const peak = number(own.version === 1 ? 'memory.max_usage_in_bytes' : 'memory.peak');
      return peak === undefined ? undefined : peak / 1024 / 1024;
    },
    oomKills() {
      return own.version === 1 ? number('memory.oom_control', /oom_kill (\d+)/) : number('memory.events', /oom_kill (\d+)/);
    },
    remove() {
      try {
        rmdirSync(dir);
      } catch {
        // Still has a process (a worker that did not exit): the kernel keeps it until then.
      }
    },
  };
}
