// The worker's Prometheus endpoint: the SDK's own metrics (workflow and activity task latencies, pollers, slots,
// sticky cache) served by its native core, plus the worker process's memory, which the SDK does not report and which
// is what a pod's memory limit is set against.
import { totalmem } from 'node:os';
import { getHeapStatistics } from 'node:v8';
import type { MetricMeter } from '@temporalio/common';
import type { RuntimeOptions } from '@temporalio/worker';

const MEMORY_SAMPLE_MS = 5_000;

export function prometheusTelemetry(bindAddress: string): NonNullable<RuntimeOptions['telemetryOptions']>['metrics'] {
  // Seconds, as Prometheus expects of durations; the default is milliseconds.
  return { prometheus: { bindAddress, useSecondsForDurations: true } };
}

/** Samples the process's memory into gauges every few seconds until the returned function is called. */
export function reportProcessMemory(meter: MetricMeter): () => void {
  const gauge = (name: string, description: string) => meter.createGauge(name, 'int', 'bytes', description);
  const resident = gauge('spot_guard_worker_resident_memory_bytes', 'Resident set size of the worker process');
  const heapUsed = gauge('spot_guard_worker_heap_used_bytes', 'V8 heap in use by the main thread (activities, clients, the node watch); workflow code runs on a thread of its own');
  const heapLimit = gauge('spot_guard_worker_heap_limit_bytes', 'V8 heap size limit of the main thread (--max-old-space-size and the young generation)');
  const external = gauge('spot_guard_worker_external_memory_bytes', 'Memory held by JavaScript objects outside the V8 heap (buffers)');
  const sample = (): void => {
    const usage = process.memoryUsage();
    resident.set(usage.rss);
    heapUsed.set(usage.heapUsed);
    external.set(usage.external);
    heapLimit.set(getHeapStatistics().heap_size_limit);
  };
  sample();
  const timer = setInterval(sample, MEMORY_SAMPLE_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * The memory limit the worker runs under, as Node sees it: in a pod, `resources.limits.memory`, from which Node sizes
 * every thread's V8 heap. Without one the heaps may grow to a share of the machine's memory before collecting.
 */
export function memoryLimitNote(): string {
  const limit = process.constrainedMemory();
  const heapMiB = Math.round(getHeapStatistics().heap_size_limit / 2 ** 20);
  if (limit > 0 && limit < totalmem()) return `memory limit ${Math.round(limit / 2 ** 20)} MiB: V8 heap limit ${heapMiB} MiB per thread`;
  return `no memory limit: each V8 heap may grow to ${heapMiB} MiB before it must be collected; give the worker one (a pod's resources.limits.memory, 640Mi for waves of 500 nodes)`;
}
