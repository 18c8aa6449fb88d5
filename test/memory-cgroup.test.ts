// The benchmark's pod-like memory limit for the worker: which cgroup it creates, what it writes, and how it reads the
// peak and OOM kills back, on a fake cgroup tree (the real one is used by `npm run bench -- --worker-memory-limit`).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMemoryCgroup } from '../scripts/peers/memory-cgroup.js';

describe('memory cgroup for the benchmarked worker', function () {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'spot-guard-cgroup-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('cgroup v1: a child of this process\'s memory cgroup with memory.limit_in_bytes, its peak and OOM kills read back', function () {
    writeFileSync(join(root, 'self'), '4:memory:/pods/bench\n3:cpuset:/\n0::/\n');
    mkdirSync(join(root, 'sys', 'memory', 'pods', 'bench'), { recursive: true });
    const cgroup = createMemoryCgroup(512, { selfCgroup: join(root, 'self'), cgroupRoot: join(root, 'sys') });
    assert.equal(cgroup.dir, join(root, 'sys', 'memory', 'pods', 'bench', `spot-guard-worker-${process.pid}`));
    assert.equal(readFileSync(join(cgroup.dir, 'memory.limit_in_bytes'), 'utf8'), String(512 * 1024 * 1024));
    assert.equal(cgroup.peakMiB(), undefined, 'nothing to read yet');
    writeFileSync(join(cgroup.dir, 'memory.max_usage_in_bytes'), `${500 * 1024 * 1024}\n`);
    writeFileSync(join(cgroup.dir, 'memory.oom_control'), 'oom_kill_disable 0\nunder_oom 0\noom_kill 1\n');
    assert.equal(cgroup.peakMiB(), 500);
    assert.equal(cgroup.oomKills(), 1);
  });

  it('cgroup v2: used only where the memory controller is delegated; memory.max, memory.peak, memory.events', function () {
    writeFileSync(join(root, 'self'), '0::/user.slice/bench\n');
    const own = join(root, 'sys', 'user.slice', 'bench');
    mkdirSync(own, { recursive: true });
    writeFileSync(join(own, 'cgroup.subtree_control'), 'cpu pids\n');
    const paths = { selfCgroup: join(root, 'self'), cgroupRoot: join(root, 'sys') };
    assert.throws(() => createMemoryCgroup(512, paths), /--worker-memory-limit needs a memory cgroup .* none found in \/proc\/self\/cgroup/);
    writeFileSync(join(own, 'cgroup.subtree_control'), 'cpu memory pids\n');
    const cgroup = createMemoryCgroup(256, paths);
    assert.equal(readFileSync(join(cgroup.dir, 'memory.max'), 'utf8'), String(256 * 1024 * 1024));
    writeFileSync(join(cgroup.dir, 'memory.peak'), `${200 * 1024 * 1024}\n`);
    writeFileSync(join(cgroup.dir, 'memory.events'), 'low 0\nhigh 0\nmax 3\noom 0\noom_kill 0\n');
    assert.equal(cgroup.peakMiB(), 200);
    assert.equal(cgroup.oomKills(), 0);
  });
});
