// The worker's Prometheus endpoint: the SDK's own metrics (workflow and activity task latencies, pollers, slots,
// sticky cache) served by its native core, plus the worker process's memory, which the SDK does not report and which
// is what a pod's memory limit is set against.
import { getHeapStatistics } from 'node:v8';
import type { MetricMeter } from '@temporalio/common';
import type { RuntimeOptions } from '@temporalio/worker';
import { DOMAIN_HISTOGRAMS, DURATION_BUCKETS_SECONDS } from '../activities/domain-metrics.js';

const MEMORY_SAMPLE_MS = 5_000;

export function prometheusTelemetry(bindAddress: string): NonNullable<RuntimeOptions['telemetryOptions']>['metrics'] {
  // Seconds, as Prometheus expects of durations; the default is milliseconds.
  const histogramBucketOverrides = Object.fromEntries(DOMAIN_HISTOGRAMS.map((name) => [name, DURATION_BUCKETS_SECONDS]));
  return { prometheus: { bindAddress, useSecondsForDurations: true, histogramBucketOverrides } };
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
