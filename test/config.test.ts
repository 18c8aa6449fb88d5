import assert from 'node:assert/strict';
import { loadConfig, parseTaint } from '../worker/config.js';
import { parseDurationSeconds } from '../workflows/shared/settings.js';

const base = { SPOT_ASG_NAME: 'spot', ON_DEMAND_ASG_NAME: 'od' };

function errorsOf(env: Record<string, string>): string[] {
  const result = loadConfig(env);
  assert.equal(result.ok, false, 'expected the configuration to be refused');
  return result.ok ? [] : result.errors;
}

describe('worker configuration', function () {
  it('uses the seeds\' defaults: 10 s polls, 120 s capacity check and scale timeouts, the NTH taint', function () {
    const result = loadConfig(base);
    assert.ok(result.ok);
    const { flow, temporal } = result.config;
    assert.equal(flow.asgPollIntervalSeconds, 10);
    assert.equal(flow.capacityCheckTimeoutSeconds, 120);
    assert.equal(flow.scaleTimeoutSeconds, 120);
    assert.deepEqual(flow.taint, { key: 'spot-instance-terminating', value: 'true', effect: 'NoSchedule' });
    assert.equal(flow.terminateDrainedInstance, true);
    assert.equal(flow.addReplacementCapacity, true);
    assert.equal(temporal.address, undefined, 'no address: the embedded dev server');
    assert.equal(temporal.taskQueue, 'spot-guard');
  });

  it('reads the disruption budget as a percentage or a number of nodes, 10% by default, and the 2 s coalescing window', function () {
    const defaults = loadConfig(base);
    assert.ok(defaults.ok);
    assert.deepEqual(defaults.config.flow.drainBudget, { percent: 10 });
    assert.equal(defaults.config.flow.coalesceWindowSeconds, 2);
    const nodes = loadConfig({ ...base, SPOT_GUARD_DRAIN_BUDGET: '5' });
    assert.ok(nodes.ok);
    assert.deepEqual(nodes.config.flow.drainBudget, { nodes: 5 });
    for (const bad of ['0', '0%', '150%', 'ten', '-3']) {
      assert.deepEqual(errorsOf({ ...base, SPOT_GUARD_DRAIN_BUDGET: bad }), [
        `SPOT_GUARD_DRAIN_BUDGET="${bad}" is not a disruption budget: expected a percentage of the group (e.g. 10%, more than 0 and at most 100) or a number of nodes (e.g. 5, at least 1)`,
      ]);
    }
    assert.match(errorsOf({ ...base, SPOT_GUARD_COALESCE_WINDOW: '90' })[0] ?? '', /SPOT_GUARD_COALESCE_WINDOW="90" is out of range: expected between 0 and 60 seconds/);
  });

  it('evicts the pods nothing recreates on an interruption notice only by default, or always; anything else is refused, naming it', function () {
    const defaults = loadConfig(base);
    assert.ok(defaults.ok);
    assert.equal(defaults.config.flow.evictUnrecreatablePods, 'on-interruption');
    for (const [text, expected] of [['always', 'always'], ['Always', 'always'], [' on-interruption ', 'on-interruption'], ['', 'on-interruption']] as const) {
      const loaded = loadConfig({ ...base, SPOT_GUARD_EVICT_UNRECREATABLE_PODS: text });
      assert.ok(loaded.ok, text);
      assert.equal(loaded.config.flow.evictUnrecreatablePods, expected, text);
    }
    for (const bad of ['never', 'true', 'on-rebalance', 'on_interruption']) {
      assert.deepEqual(errorsOf({ ...base, SPOT_GUARD_EVICT_UNRECREATABLE_PODS: bad }), [
        `SPOT_GUARD_EVICT_UNRECREATABLE_PODS="${bad}" is not when to evict the pods nothing recreates (no controller, emptyDir data): expected on-interruption (on an interruption notice or drainNow, not on a rebalance recommendation) or always`,
      ]);
    }
  });

  it('refuses the removed settings, naming each (the SDK\'s safety nets stay on; the naive strategy is the benchmark\'s own)', function () {
    for (const [name, value] of [
      ['SPOT_GUARD_WORKFLOW_DEADLOCK_TIMEOUT', 'off'],
      ['SPOT_GUARD_WORKFLOW_STACK_TRACES', 'on'],
      ['SPOT_GUARD_BENCH_NAIVE_CAPACITY', 'true'],
    ] as const) {
      const errors = errorsOf({ ...base, [name]: value });
      assert.equal(errors.length, 1, errors.join('\n'));
      assert.match(errors[0] ?? '', new RegExp(`^${name}="${value}" .*removed`));
    }
    const all = errorsOf({ ...base, SPOT_GUARD_WORKFLOW_DEADLOCK_TIMEOUT: '5s', SPOT_GUARD_WORKFLOW_STACK_TRACES: 'off', SPOT_GUARD_BENCH_NAIVE_CAPACITY: 'false' });
    assert.equal(all.length, 3, 'each one named, whatever its value');
    assert.ok(loadConfig({ ...base, SPOT_GUARD_WORKFLOW_STACK_TRACES: ' ' }).ok, 'blank counts as unset, as for every setting');
  });

  it('collects the V8 heaps at 20% growth without a memory limit by default (auto); off and 10 to 400 percent accepted', function () {
    const defaults = loadConfig(base);
    assert.ok(defaults.ok);
    assert.equal(defaults.config.heapGrowth, 'auto');
    for (const [text, expected] of [['off', 'off'], ['OFF', 'off'], ['10', 10], ['50', 50], ['400', 400]] as const) {
      const loaded = loadConfig({ ...base, SPOT_GUARD_HEAP_GROWTH_PERCENT: text });
      assert.ok(loaded.ok, text);
      assert.equal(loaded.config.heapGrowth, expected, text);
    }
    for (const bad of ['9', '401', '20%', '1.5', 'lazy']) {
      assert.deepEqual(errorsOf({ ...base, SPOT_GUARD_HEAP_GROWTH_PERCENT: bad }), [
        `SPOT_GUARD_HEAP_GROWTH_PERCENT="${bad}" is not a heap growth: expected auto, off, or a whole number of percent from 10 to 400`,
      ]);
    }
  });

  it('keeps a workflow task on its worker\'s sticky queue 30 s by default (the SDK\'s 10 s cascades in a wave), 1 s to 5 min', function () {
    const defaults = loadConfig(base);
    assert.ok(defaults.ok);
    assert.equal(defaults.config.stickyQueueTimeoutSeconds, 30);
    const minute = loadConfig({ ...base, SPOT_GUARD_STICKY_QUEUE_TIMEOUT: '1m' });
    assert.ok(minute.ok);
    assert.equal(minute.config.stickyQueueTimeoutSeconds, 60);
    assert.deepEqual(errorsOf({ ...base, SPOT_GUARD_STICKY_QUEUE_TIMEOUT: '0' }), [
      'SPOT_GUARD_STICKY_QUEUE_TIMEOUT="0" is out of range: expected between 1 and 300 seconds',
    ]);
  });

  it('runs 100 rebalance workflow tasks at once by default (the SDK\'s 40 queued a wave\'s answers), 2 to 1000', function () {
    const defaults = loadConfig(base);
    assert.ok(defaults.ok);
    assert.equal(defaults.config.workflowTaskSlots, 100);
    const few = loadConfig({ ...base, SPOT_GUARD_WORKFLOW_TASK_SLOTS: '40' });
    assert.ok(few.ok);
    assert.equal(few.config.workflowTaskSlots, 40);
    for (const bad of ['1', '1001', '50.5', 'many']) {
      assert.deepEqual(errorsOf({ ...base, SPOT_GUARD_WORKFLOW_TASK_SLOTS: bad }), [
        `SPOT_GUARD_WORKFLOW_TASK_SLOTS="${bad}" is not a number of workflow tasks at once: expected a whole number from 2 to 1000`,
      ]);
    }
  });

  it('serves no metrics by default, or Prometheus metrics on an IP address and port', function () {
    const defaults = loadConfig(base);
    assert.ok(defaults.ok);
    assert.equal(defaults.config.metricsAddress, undefined);
    for (const good of ['0.0.0.0:9464', '127.0.0.1:9090', '[::]:9464', '[::1]:80']) {
      const result = loadConfig({ ...base, SPOT_GUARD_METRICS_ADDRESS: good });
      assert.ok(result.ok, good);
      assert.equal(result.config.metricsAddress, good);
    }
    for (const bad of ['9464', 'localhost:9464', '0.0.0.0:0', '0.0.0.0:70000', '256.0.0.1:9464', '[nope]:9464', ':9464']) {
      assert.deepEqual(errorsOf({ ...base, SPOT_GUARD_METRICS_ADDRESS: bad }), [
        `SPOT_GUARD_METRICS_ADDRESS="${bad}" is not an address to listen on: expected off, or an IP address and port (e.g. 0.0.0.0:9464 or [::]:9464)`,
      ]);
    }
  });

  it('serves no intake by default; with an address it needs a certificate and key unless plain HTTP is allowed for a test', function () {
    const defaults = loadConfig(base);
    assert.ok(defaults.ok);
    assert.equal(defaults.config.intake, undefined);
    const tls = loadConfig({ ...base, SPOT_GUARD_INTAKE_ADDRESS: '0.0.0.0:8443', SPOT_GUARD_INTAKE_TLS_CERT: '/tls/tls.crt', SPOT_GUARD_INTAKE_TLS_KEY: '/tls/tls.key' });
    assert.ok(tls.ok);
    assert.deepEqual(tls.config.intake, {
      address: '0.0.0.0:8443',
      tls: { certFile: '/tls/tls.crt', keyFile: '/tls/tls.key' },
      audience: 'spot-guard-intake',
      signalerServiceAccount: 'spot-guard/spot-guard-signaler',
      requestsPerNodePerMinute: 10,
    });
    const errors = errorsOf({ ...base, SPOT_GUARD_INTAKE_ADDRESS: '0.0.0.0:8443', SPOT_GUARD_SIGNALER_SERVICE_ACCOUNT: 'signaler', SPOT_GUARD_INTAKE_RATE: '0' });
    assert.equal(errors.length, 3);
    assert.match(errors[0] ?? '', /SPOT_GUARD_INTAKE_TLS_CERT and SPOT_GUARD_INTAKE_TLS_KEY: expected both/);
    assert.match(errors[1] ?? '', /SPOT_GUARD_SIGNALER_SERVICE_ACCOUNT="signaler": expected <namespace>\/<name>/);
    assert.match(errors[2] ?? '', /SPOT_GUARD_INTAKE_RATE="0"/);
    assert.ok(loadConfig({ ...base, SPOT_GUARD_INTAKE_ADDRESS: '127.0.0.1:8080', SPOT_GUARD_INTAKE_ALLOW_HTTP: 'true' }).ok);
  });

  it('names the variable, the bad value and what is expected', function () {
    assert.deepEqual(errorsOf({ ...base, SPOT_GUARD_CAPACITY_CHECK_TIMEOUT: 'abc' }), [
      'SPOT_GUARD_CAPACITY_CHECK_TIMEOUT="abc" is not a duration: expected whole seconds (e.g. 120) or a number with s, m or h (e.g. 2m)',
    ]);
  });

  it('reports every bad value at once', function () {
    const errors = errorsOf({
      SPOT_ASG_NAME: 'same',
      ON_DEMAND_ASG_NAME: 'same',
      ENABLE_SPOT_GUARD: 'maybe',
      SPOT_GUARD_SCALE_TIMEOUT: '5',
      SPOT_GUARD_TAINT: 'no-effect=true',
      LOG_LEVEL: 'loud',
      TEMPORAL_ADDRESS: 'http://temporal:7233',
      SPOT_GUARD_DEV_SERVER_PORT: '70000',
    });
    assert.deepEqual(errors, [
      'ENABLE_SPOT_GUARD="maybe" is not a boolean: expected true or false',
      'SPOT_ASG_NAME and ON_DEMAND_ASG_NAME are both "same": expected two different groups',
      'SPOT_GUARD_TAINT="no-effect=true" is not a taint: expected key=value:Effect with Effect NoSchedule, PreferNoSchedule or NoExecute',
      'LOG_LEVEL="loud" is not a log level: expected one of TRACE, DEBUG, INFO, WARN, ERROR',
      'SPOT_GUARD_SCALE_TIMEOUT="5" is out of range: expected between 10 and 3600 seconds',
      'TEMPORAL_ADDRESS="http://temporal:7233" is not host:port (e.g. temporal-frontend.temporal:7233)',
      'SPOT_GUARD_DEV_SERVER_PORT="70000" is not a TCP port: expected a whole number from 1 to 65535',
    ]);
  });

  it('requires a source of pairs, and both names of the shorthand', function () {
    const [none, ...more] = errorsOf({});
    assert.deepEqual(more, []);
    assert.match(none ?? '', /^no groups to protect: .*SPOT_GUARD_PAIR_DISCOVERY=tags.*SPOT_GUARD_PAIRS.*SPOT_ASG_NAME and ON_DEMAND_ASG_NAME/);
    assert.deepEqual(errorsOf({ ON_DEMAND_ASG_NAME: 'od' }), ['SPOT_ASG_NAME is not set: expected the name of your spot Auto Scaling group']);
  });

  it('needs TEMPORAL_ADDRESS for TLS or an API key, and cert and key together', function () {
    assert.deepEqual(errorsOf({ ...base, TEMPORAL_API_KEY: 'secret-value', TEMPORAL_TLS_CLIENT_CERT_PATH: '/c.pem' }), [
      'TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH must be set together for mTLS',
      'TEMPORAL_TLS / TEMPORAL_API_KEY / client certificates need TEMPORAL_ADDRESS: the embedded dev server speaks plain gRPC',
    ]);
    const cloud = loadConfig({ ...base, TEMPORAL_ADDRESS: 'ns.acct.tmprl.cloud:7233', TEMPORAL_API_KEY: 'secret-value' });
    assert.ok(cloud.ok);
    assert.deepEqual(cloud.config.temporal.tls, { serverName: undefined, serverRootCaPath: undefined, clientCertPath: undefined, clientKeyPath: undefined });
  });

  it('in a Kubernetes cluster, refuses the embedded dev server unless told so, naming TEMPORAL_ADDRESS', function () {
    const inCluster = { ...base, KUBERNETES_SERVICE_HOST: '10.96.0.1' };
    const errors = errorsOf(inCluster);
    assert.equal(errors.length, 1, errors.join('\n'));
    assert.match(errors[0] ?? '', /TEMPORAL_ADDRESS/);
    assert.match(errors[0] ?? '', /SPOT_GUARD_ALLOW_DEV_SERVER_IN_CLUSTER=true/, 'names the explicit way out');
    for (const accepted of [
      { ...inCluster, TEMPORAL_ADDRESS: 'temporal-frontend.temporal:7233' },
      { ...inCluster, SPOT_GUARD_ALLOW_DEV_SERVER_IN_CLUSTER: 'true' },
      { ...base, KUBERNETES_SERVICE_HOST: ' ' },
      base,
    ]) {
      const loaded = loadConfig(accepted);
      assert.ok(loaded.ok, JSON.stringify(accepted));
    }
    assert.match(errorsOf({ ...inCluster, SPOT_GUARD_ALLOW_DEV_SERVER_IN_CLUSTER: 'maybe' }).join('\n'), /SPOT_GUARD_ALLOW_DEV_SERVER_IN_CLUSTER="maybe" is not a boolean/);
  });

  it('writes its logs as JSON lines unless stdout is a terminal by default; json or text on request; anything else refused', function () {
    const defaults = loadConfig(base);
    assert.ok(defaults.ok);
    assert.equal(defaults.config.logFormat, 'auto');
    for (const [text, expected] of [['json', 'json'], ['TEXT', 'text'], [' auto ', 'auto']] as const) {
      const loaded = loadConfig({ ...base, SPOT_GUARD_LOG_FORMAT: text });
      assert.ok(loaded.ok, text);
      assert.equal(loaded.config.logFormat, expected);
    }
    assert.match(errorsOf({ ...base, SPOT_GUARD_LOG_FORMAT: 'xml' })[0] ?? '', /SPOT_GUARD_LOG_FORMAT="xml" is not a log format/);
  });

  it('refuses a reclaim watch so long and frequent that its history would grow without bound', function () {
    assert.deepEqual(errorsOf({ ...base, SPOT_GUARD_RECLAIM_WAIT: '70h', SPOT_GUARD_RECLAIM_POLL_INTERVAL: '5' }), [
      'SPOT_GUARD_RECLAIM_WAIT="70h" with SPOT_GUARD_RECLAIM_POLL_INTERVAL="5" means more than 2000 looks: expected a longer interval or a shorter wait',
    ]);
  });

  it('never echoes the API key in an error', function () {
    const errors = errorsOf({ ...base, TEMPORAL_API_KEY: 'super-secret-key' });
    assert.ok(errors.every((e) => !e.includes('super-secret-key')));
  });

  it('parses durations and taints', function () {
    assert.equal(parseDurationSeconds('120'), 120);
    assert.equal(parseDurationSeconds('2m'), 120);
    assert.equal(parseDurationSeconds('1.5h'), 5400);
    assert.equal(parseDurationSeconds('2 minutes'), undefined);
    assert.deepEqual(parseTaint('example.com/spot=yes:NoExecute'), { key: 'example.com/spot', value: 'yes', effect: 'NoExecute' });
    assert.equal(parseTaint('key=value:Sometimes'), undefined);
  });
});
