// The observability docs and the Grafana dashboard against the code: every metric the worker exports is documented
// and on the dashboard, the dashboard queries no metric that does not exist, and every step's Event reason is in the
// docs' table.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type MetricMeter, noopMetricMeter } from '@temporalio/common';
import { DomainMetrics } from '../activities/domain-metrics.js';
import { CAPACITY_METRICS } from '../workflows/capacity/metrics.js';
import { EVENT_REASONS, STEPS } from '../workflows/shared/announcements.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/** The names of every metric DomainMetrics creates. */
function exportedMetrics(): string[] {
  const names: string[] = [];
  const meter: MetricMeter = {
    createCounter: (name, ...rest) => (names.push(name), noopMetricMeter.createCounter(name, ...rest)),
    createHistogram: (name, ...rest) => (names.push(name), noopMetricMeter.createHistogram(name, ...rest)),
    createGauge: (name, ...rest) => (names.push(name), noopMetricMeter.createGauge(name, ...rest)),
    withTags: () => meter,
  };
  new DomainMetrics(meter);
  // The capacity workflow's, recorded from workflow code through the SDK's workflow meter.
  return [...names, ...Object.values(CAPACITY_METRICS).map(([name]) => name)];
}

interface Dashboard {
  panels: { type: string; targets?: { expr: string }[] }[];
}

describe('docs/observability.md and deploy/grafana-dashboard.json', function () {
  const docs = readFileSync(`${repoRoot}docs/observability.md`, 'utf8');
  const dashboard = JSON.parse(readFileSync(`${repoRoot}deploy/grafana-dashboard.json`, 'utf8')) as Dashboard;
  const queried = new Set(
    dashboard.panels.flatMap((p) => p.targets ?? []).flatMap((t) => [...t.expr.matchAll(/spot_guard_\w+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''))),
  );
  const exported = exportedMetrics();

  it('documents every metric the worker exports, in the metrics table', function () {
    assert.ok(exported.length >= 15, exported.join(', '));
    for (const name of exported) assert.match(docs, new RegExp(`^\\| \`${name}\` \\|`, 'm'), `${name} in the table`);
  });

  it('the dashboard shows every metric, and queries none that does not exist', function () {
    assert.deepEqual([...queried].filter((name) => !exported.includes(name)), [], 'queried but not exported');
    assert.deepEqual(exported.filter((name) => !queried.has(name)), [], 'exported but not on the dashboard');
    assert.ok(dashboard.panels.every((p) => p.type === 'row' || (p.targets ?? []).length > 0), 'every panel has a query');
  });

  it('names every step and its Event reason in the reasons table', function () {
    for (const step of STEPS) assert.match(docs, new RegExp(`^\\| \`${step}\` \\| \`${EVENT_REASONS[step]}\` \\|`, 'm'), step);
    assert.equal(new Set(Object.values(EVENT_REASONS)).size, STEPS.length, 'one reason per step');
  });
});
