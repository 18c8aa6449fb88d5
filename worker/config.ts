// Worker configuration from environment variables. Everything is validated before anything starts; every bad value
// gets its own message naming the variable, the value and what is expected, and the process refuses to start.
import { isIP } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ASG_NAME_PATTERN, TASK_QUEUE_DEFAULT } from '../workflows/shared/ids.js';
import { ENABLED_TAG, parsePairList, problemsOfPairList } from '../activities/pair-rules.js';
import { type DrainBudget, type FlowSettings, type GroupPair, parseDurationSeconds, type TaintSpec, type UnrecreatablePodEviction } from '../workflows/shared/settings.js';
import type { HeapGrowthSetting } from './memory.js';

export type LogLevel = 'TRACE' | 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';

/** auto: one JSON object per line unless stdout is a terminal (worker/log.ts). */
export type LogFormatSetting = 'auto' | 'json' | 'text';

export interface TemporalSettings {
  /** host:port of the Temporal frontend; undefined starts the embedded dev server. */
  address?: string;
  namespace: string;
  taskQueue: string;
  /** Task queue of the per-group workflows (capacity, monitor): TEMPORAL_TASK_QUEUE + "-groups". */
  groupTaskQueue: string;
  apiKey?: string;
  tls?: { serverName?: string; serverRootCaPath?: string; clientCertPath?: string; clientKeyPath?: string };
}

export interface DevServerSettings {
  temporalCli: string;
  port: number;
  uiPort: number;
  dbFile: string;
  /** Port of the server's own Prometheus metrics; undefined: one the CLI picks. */
  metricsPort?: number;
}

/**
 * Which groups Spot Guard protects: a fixed list (SPOT_GUARD_PAIRS, or the one-pair shorthand SPOT_ASG_NAME and
 * ON_DEMAND_ASG_NAME), or the spot groups tagged spot-guard.io/enabled=true, read again every `refreshSeconds`.
 */
export type PairSource =
  | { kind: 'list'; setting: 'SPOT_GUARD_PAIRS' | 'SPOT_ASG_NAME and ON_DEMAND_ASG_NAME'; pairs: GroupPair[] }
  | { kind: 'tags'; refreshSeconds: number };

export interface WorkerConfig {
  spotGuardEnabled: boolean;
  pairs: PairSource;
  flow: FlowSettings;
  temporal: TemporalSettings;
  devServer: DevServerSettings;
  dryRun: boolean;
  logLevel: LogLevel;
  logFormat: LogFormatSetting;
  maxCachedWorkflows: number;
  /** Rebalance workflow tasks the worker runs at once (their local activities wait on the Kubernetes API). */
  workflowTaskSlots: number;
  /** How far past its live data a V8 heap grows before it is collected (see worker/memory.ts). */
  heapGrowth: HeapGrowthSetting;
  /** ip:port of the Prometheus endpoint (/metrics); undefined: no endpoint. */
  metricsAddress?: string;
  /** How long a workflow task waits on this worker's sticky queue before any worker may take it (and replay). */
  stickyQueueTimeoutSeconds: number;
  /** The signalers' intake (worker/intake.ts); undefined: not served. */
  intake?: IntakeConfig;
  /** ip:port of /healthz and /readyz (worker/health.ts); undefined: not served. */
  healthAddress?: string;
}

export interface IntakeConfig {
  /** ip:port to listen on. */
  address: string;
  /** PEM files of its certificate and key; both undefined only with SPOT_GUARD_INTAKE_ALLOW_HTTP=true (a local test). */
  tls?: { certFile: string; keyFile: string };
  audience: string;
  signalerServiceAccount: string;
  requestsPerNodePerMinute: number;
}

/**
 * The capacity and monitor workflows poll a queue of their own, so a wave's hundreds of starting rebalance workflows
 * never delay the one workflow that writes the group's desired capacity, and it stays in its worker's cache.
 */
export const groupTaskQueueOf = (taskQueue: string): string => `${taskQueue}-groups`;

export type ConfigResult = { ok: true; config: WorkerConfig } | { ok: false; errors: string[] };

type Env = Record<string, string | undefined>;

const MAX_RECLAIM_LOOKS = 2000;

/** One row per variable: the configuration reference (docs/configuration.md) is written from the same names and defaults. */
export const DEFAULTS = {
  ENABLE_SPOT_GUARD: 'true',
  SPOT_GUARD_PAIR_DISCOVERY: 'off',
  SPOT_GUARD_PAIR_REFRESH_INTERVAL: '5m',
  SPOT_GUARD_CAPACITY_CHECK_TIMEOUT: '120',
  SPOT_GUARD_SCALE_TIMEOUT: '120',
  SPOT_GUARD_ASG_POLL_INTERVAL: '10',
  SPOT_GUARD_NODE_READY_TIMEOUT: '180',
  SPOT_GUARD_DRAIN_TIMEOUT: '300',
  SPOT_GUARD_TAINT: 'spot-instance-terminating=true:NoSchedule',
  SPOT_GUARD_TERMINATE_DRAINED: 'true',
  SPOT_GUARD_EVICT_UNRECREATABLE_PODS: 'on-interruption',
  SPOT_GUARD_RECLAIM_POLL_INTERVAL: '60',
  SPOT_GUARD_RECLAIM_WAIT: '6h',
  SPOT_GUARD_COALESCE_WINDOW: '2',
  SPOT_GUARD_DRAIN_BUDGET: '10%',
  SPOT_GUARD_MONITOR_INTERVAL: '30',
  SPOT_GUARD_STABILITY_WINDOW: '2m',
  SPOT_GUARD_EVENT_CLEANUP_AFTER: '10m',
  SPOT_GUARD_SCALE_DOWN_TAINT: 'spot-guard.io/scale-down-pending=true:NoSchedule',
  SPOT_GUARD_CAPACITY_BUFFER_PERCENT: '10',
  SPOT_GUARD_REMOVE_UNLAUNCHED_ON_DEMAND: 'false',
  SPOT_GUARD_POD_RESCHEDULE_TIMEOUT: '120',
  SPOT_GUARD_DRY_RUN: 'false',
  SPOT_GUARD_MAX_CACHED_WORKFLOWS: '1000',
  SPOT_GUARD_WORKFLOW_TASK_SLOTS: '100',
  SPOT_GUARD_HEAP_GROWTH_PERCENT: 'auto',
  SPOT_GUARD_METRICS_ADDRESS: 'off',
  SPOT_GUARD_HEALTH_ADDRESS: 'off',
  SPOT_GUARD_STICKY_QUEUE_TIMEOUT: '30',
  SPOT_GUARD_INTAKE_ADDRESS: 'off',
  SPOT_GUARD_INTAKE_AUDIENCE: 'spot-guard-intake',
  SPOT_GUARD_SIGNALER_SERVICE_ACCOUNT: 'spot-guard/spot-guard-signaler',
  SPOT_GUARD_INTAKE_RATE: '10',
  SPOT_GUARD_INTAKE_ALLOW_HTTP: 'false',
  LOG_LEVEL: 'INFO',
  SPOT_GUARD_LOG_FORMAT: 'auto',
  SPOT_GUARD_ALLOW_DEV_SERVER_IN_CLUSTER: 'false',
  TEMPORAL_NAMESPACE: 'default',
  TEMPORAL_TASK_QUEUE: TASK_QUEUE_DEFAULT,
  TEMPORAL_TLS: 'false',
  SPOT_GUARD_DEV_SERVER_PORT: '7233',
  SPOT_GUARD_DEV_UI_PORT: '8233',
} as const;

export function cacheDir(env: Env = process.env): string {
  return env.SPOT_GUARD_CACHE || join(homedir(), '.cache', 'spot-guard');
}


export function parseTaint(text: string): TaintSpec | undefined {
  const match = /^([A-Za-z0-9][-A-Za-z0-9_./]*)=([-A-Za-z0-9_.]*):(NoSchedule|PreferNoSchedule|NoExecute)$/.exec(text.trim());
  if (!match) return undefined;
  return { key: match[1], value: match[2], effect: match[3] as TaintSpec['effect'] };
}

/** Parses a disruption budget: "10%" (of the group's desired capacity) or "5" (nodes). */
export function parseDrainBudget(text: string): DrainBudget | undefined {
  const percent = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(text);
  if (percent) {
    const value = Number(percent[1]);
    return value > 0 && value <= 100 ? { percent: value } : undefined;
  }
  const nodes = /^\s*(\d+)\s*$/.exec(text);
  if (nodes) {
    const value = Number(nodes[1]);
    return value >= 1 ? { nodes: value } : undefined;
  }
  return undefined;
}

/** An IP literal and port, as the SDK's metrics server binds it: it does not resolve host names. */
export function isBindAddress(text: string): boolean {
  const match = /^(?:(\d{1,3}(?:\.\d{1,3}){3})|\[([0-9A-Fa-f:.]+)\]):(\d{1,5})$/.exec(text);
  if (!match) return false;
  const port = Number(match[3]);
  if (port < 1 || port > 65535) return false;
  if (match[1]) return match[1].split('.').every((octet) => Number(octet) <= 255);
  return isIP(match[2] ?? '') === 6;
}

/**
 * Settings that no longer exist, with what took their place. A value still set would otherwise be ignored without a
 * word, and the operator would believe it in effect: the worker refuses to start instead, naming it.
 */
export const REMOVED_SETTINGS: Readonly<Record<string, string>> = {
  SPOT_GUARD_WORKFLOW_DEADLOCK_TIMEOUT:
    "the worker keeps the Temporal SDK's default deadlock detection (a workflow task that runs 5 s without yielding fails and is retried)",
  SPOT_GUARD_WORKFLOW_STACK_TRACES: "workflow stack traces are always on, the Temporal SDK's default (the Temporal UI's Stack Trace tab)",
  SPOT_GUARD_BENCH_NAIVE_CAPACITY: "the benchmark runs its own naive workflow on a worker of its own (bench/naive/); the production worker has no naive strategy",
};

/** One error per removed setting still set (to anything but blanks, which the other settings read as unset too). */
export function removedSettingErrors(env: Env): string[] {
  return Object.entries(REMOVED_SETTINGS)
    .filter(([name]) => env[name]?.trim())
    .map(([name, replacement]) => `${name}="${env[name]}" was removed: ${replacement}; unset it`);
}

// --- reading the variables: every helper below adds its complaints to the one list loadConfig reports -------------

/** The environment being read and the errors found so far, shared by every section's reader. */
interface ConfigInput {
  env: Env;
  errors: string[];
}

type SettingName = keyof typeof DEFAULTS;

const read = (input: ConfigInput, name: SettingName): string => input.env[name]?.trim() || DEFAULTS[name];

function bool(input: ConfigInput, name: SettingName): boolean {
  const value = read(input, name).toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(value)) return true;
  if (['false', '0', 'no', 'off'].includes(value)) return false;
  input.errors.push(`${name}="${input.env[name]}" is not a boolean: expected true or false`);
  return false;
}

function seconds(input: ConfigInput, name: SettingName, min: number, max: number): number {
  const raw = read(input, name);
  const value = parseDurationSeconds(raw);
  if (value === undefined) {
    input.errors.push(`${name}="${raw}" is not a duration: expected whole seconds (e.g. 120) or a number with s, m or h (e.g. 2m)`);
    return 0;
  }
  if (value < min || value > max) {
    input.errors.push(`${name}="${raw}" is out of range: expected between ${min} and ${max} seconds`);
  }
  return value;
}

function port(input: ConfigInput, name: SettingName): number {
  const raw = read(input, name);
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > 65535) {
    input.errors.push(`${name}="${raw}" is not a TCP port: expected a whole number from 1 to 65535`);
  }
  return value;
}

function percent(input: ConfigInput, name: SettingName): number {
  const raw = read(input, name);
  const value = Number(raw);
  if (raw === '' || !Number.isFinite(value) || value < 0 || value > 1000) {
    input.errors.push(`${name}="${raw}" is not a percentage: expected a number from 0 to 1000`);
  }
  return value;
}

function groupName(input: ConfigInput, name: 'SPOT_ASG_NAME' | 'ON_DEMAND_ASG_NAME'): string {
  const value = input.env[name]?.trim() ?? '';
  if (!value) input.errors.push(`${name} is not set: expected the name of your ${name === 'SPOT_ASG_NAME' ? 'spot' : 'on-demand'} Auto Scaling group`);
  else if (!ASG_NAME_PATTERN.test(value)) input.errors.push(`${name}="${value}" is not an Auto Scaling group name: expected 1-255 characters without blanks`);
  return value;
}

function taintSetting(input: ConfigInput, name: 'SPOT_GUARD_TAINT' | 'SPOT_GUARD_SCALE_DOWN_TAINT'): TaintSpec {
  const text = read(input, name);
  const parsed = parseTaint(text);
  if (!parsed) input.errors.push(`${name}="${text}" is not a taint: expected key=value:Effect with Effect NoSchedule, PreferNoSchedule or NoExecute`);
  return parsed ?? { key: '', value: '', effect: 'NoSchedule' };
}

// --- the sections, read in the order their errors are reported -----------------------------------------------------

/** The two groups of the one-pair shorthand, which must differ. */
function groupNames(input: ConfigInput): GroupPair {
  const spotAsgName = groupName(input, 'SPOT_ASG_NAME');
  const onDemandAsgName = groupName(input, 'ON_DEMAND_ASG_NAME');
  if (spotAsgName && spotAsgName === onDemandAsgName) {
    input.errors.push(`SPOT_ASG_NAME and ON_DEMAND_ASG_NAME are both "${spotAsgName}": expected two different groups`);
  }
  return { spotAsgName, onDemandAsgName };
}

const PAIR_SOURCES_HINT = `expected exactly one source of pairs: SPOT_GUARD_PAIR_DISCOVERY=tags (spot groups tagged ${ENABLED_TAG}=true), SPOT_GUARD_PAIRS=<spot group>:<on-demand group>,..., or SPOT_ASG_NAME and ON_DEMAND_ASG_NAME for one pair`;

/** Exactly one source of pairs; two at once would leave it unclear which groups are protected, so it is refused. */
function pairSource(input: ConfigInput): PairSource {
  const discovery = read(input, 'SPOT_GUARD_PAIR_DISCOVERY').toLowerCase();
  if (discovery !== 'off' && discovery !== 'tags') input.errors.push(`SPOT_GUARD_PAIR_DISCOVERY="${input.env.SPOT_GUARD_PAIR_DISCOVERY}" is not a pair discovery: expected tags or off`);
  const list = input.env.SPOT_GUARD_PAIRS?.trim() ?? '';
  const shorthand = ['SPOT_ASG_NAME', 'ON_DEMAND_ASG_NAME'].filter((name) => input.env[name]?.trim());
  const chosen = [...(discovery === 'tags' ? ['SPOT_GUARD_PAIR_DISCOVERY=tags'] : []), ...(list ? ['SPOT_GUARD_PAIRS'] : []), ...shorthand];
  if (chosen.length > 1 && !(chosen.length === 2 && shorthand.length === 2)) {
    input.errors.push(`${chosen.join(' and ')} are set together: ${PAIR_SOURCES_HINT}`);
  }
  if (discovery === 'tags') return { kind: 'tags', refreshSeconds: seconds(input, 'SPOT_GUARD_PAIR_REFRESH_INTERVAL', 5, 24 * 3600) };
  if (list) {
    const pairs = parsePairList(list);
    input.errors.push(...problemsOfPairList(pairs, 'SPOT_GUARD_PAIRS', (name) => ASG_NAME_PATTERN.test(name) && !/[,:]/.test(name)));
    return { kind: 'list', setting: 'SPOT_GUARD_PAIRS', pairs };
  }
  if (shorthand.length === 0) {
    input.errors.push(`no groups to protect: ${PAIR_SOURCES_HINT}`);
    return { kind: 'list', setting: 'SPOT_ASG_NAME and ON_DEMAND_ASG_NAME', pairs: [] };
  }
  return { kind: 'list', setting: 'SPOT_ASG_NAME and ON_DEMAND_ASG_NAME', pairs: [groupNames(input)] };
}

/** The rebalance taint and the monitor's scale-down taint, which must not share a key. */
function taintSettings(input: ConfigInput): { taint: TaintSpec; scaleDownTaint: TaintSpec } {
  const taint = taintSetting(input, 'SPOT_GUARD_TAINT');
  const scaleDownTaint = taintSetting(input, 'SPOT_GUARD_SCALE_DOWN_TAINT');
  if (taint.key && taint.key === scaleDownTaint.key) {
    input.errors.push(`SPOT_GUARD_TAINT and SPOT_GUARD_SCALE_DOWN_TAINT both use the key "${taint.key}": expected two different keys`);
  }
  return { taint, scaleDownTaint };
}

function logLevelSetting(input: ConfigInput): LogLevel {
  const logLevel = read(input, 'LOG_LEVEL').toUpperCase();
  if (!['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'].includes(logLevel)) {
    input.errors.push(`LOG_LEVEL="${input.env.LOG_LEVEL}" is not a log level: expected one of TRACE, DEBUG, INFO, WARN, ERROR`);
  }
  return logLevel as LogLevel;
}

/** Read before the rest, so the configuration's own errors are already written in the chosen format. */
export function logFormatSetting(env: Env): LogFormatSetting | undefined {
  const value = (env.SPOT_GUARD_LOG_FORMAT?.trim() || DEFAULTS.SPOT_GUARD_LOG_FORMAT).toLowerCase();
  return value === 'auto' || value === 'json' || value === 'text' ? value : undefined;
}

function logFormatChecked(input: ConfigInput): LogFormatSetting {
  const format = logFormatSetting(input.env);
  if (!format) input.errors.push(`SPOT_GUARD_LOG_FORMAT="${input.env.SPOT_GUARD_LOG_FORMAT}" is not a log format: expected auto (JSON lines unless stdout is a terminal), json or text`);
  return format ?? 'auto';
}

function drainBudgetSetting(input: ConfigInput): DrainBudget | undefined {
  const budgetText = read(input, 'SPOT_GUARD_DRAIN_BUDGET');
  const drainBudget = parseDrainBudget(budgetText);
  if (!drainBudget) {
    input.errors.push(`SPOT_GUARD_DRAIN_BUDGET="${budgetText}" is not a disruption budget: expected a percentage of the group (e.g. 10%, more than 0 and at most 100) or a number of nodes (e.g. 5, at least 1)`);
  }
  return drainBudget;
}

function unrecreatablePodsSetting(input: ConfigInput): UnrecreatablePodEviction {
  const text = read(input, 'SPOT_GUARD_EVICT_UNRECREATABLE_PODS');
  const value = text.toLowerCase();
  if (value === 'on-interruption' || value === 'always') return value;
  input.errors.push(
    `SPOT_GUARD_EVICT_UNRECREATABLE_PODS="${text}" is not when to evict the pods nothing recreates (no controller, emptyDir data): expected on-interruption (on an interruption notice or drainNow, not on a rebalance recommendation) or always`,
  );
  return 'on-interruption';
}

/** The settings of the revert-to-spot monitor. */
function monitorSettings(input: ConfigInput, scaleDownTaint: TaintSpec): FlowSettings['monitor'] {
  return {
    checkIntervalSeconds: seconds(input, 'SPOT_GUARD_MONITOR_INTERVAL', 5, 3600),
    stabilityWindowSeconds: seconds(input, 'SPOT_GUARD_STABILITY_WINDOW', 0, 24 * 3600),
    cleanupAfterSeconds: seconds(input, 'SPOT_GUARD_EVENT_CLEANUP_AFTER', 0, 7 * 24 * 3600),
    scaleDownTaint,
    capacityBufferPercent: percent(input, 'SPOT_GUARD_CAPACITY_BUFFER_PERCENT'),
    removeUnlaunchedOnDemand: bool(input, 'SPOT_GUARD_REMOVE_UNLAUNCHED_ON_DEMAND'),
    podRescheduleTimeoutSeconds: seconds(input, 'SPOT_GUARD_POD_RESCHEDULE_TIMEOUT', 0, 3600),
  };
}

/** What the workflows act on (they read it through the loadSettings activity). */
function flowSettings(
  input: ConfigInput,
  spotGuardEnabled: boolean,
  taints: { taint: TaintSpec; scaleDownTaint: TaintSpec },
): FlowSettings {
  const drainBudget = drainBudgetSetting(input);
  const flow: FlowSettings = {
    addReplacementCapacity: spotGuardEnabled,
    capacityCheckTimeoutSeconds: seconds(input, 'SPOT_GUARD_CAPACITY_CHECK_TIMEOUT', 10, 3600),
    scaleTimeoutSeconds: seconds(input, 'SPOT_GUARD_SCALE_TIMEOUT', 10, 3600),
    asgPollIntervalSeconds: seconds(input, 'SPOT_GUARD_ASG_POLL_INTERVAL', 1, 300),
    nodeReadyTimeoutSeconds: seconds(input, 'SPOT_GUARD_NODE_READY_TIMEOUT', 0, 3600),
    drainTimeoutSeconds: seconds(input, 'SPOT_GUARD_DRAIN_TIMEOUT', 10, 24 * 3600),
    taint: taints.taint,
    terminateDrainedInstance: bool(input, 'SPOT_GUARD_TERMINATE_DRAINED'),
    evictUnrecreatablePods: unrecreatablePodsSetting(input),
    reclaimPollSeconds: seconds(input, 'SPOT_GUARD_RECLAIM_POLL_INTERVAL', 5, 3600),
    reclaimWaitSeconds: seconds(input, 'SPOT_GUARD_RECLAIM_WAIT', 0, 7 * 24 * 3600),
    coalesceWindowSeconds: seconds(input, 'SPOT_GUARD_COALESCE_WINDOW', 0, 60),
    drainBudget: drainBudget ?? { percent: 10 },
    monitor: monitorSettings(input, taints.scaleDownTaint),
  };
  // Each look is a few history events; keep a watched instance's workflow far from Temporal's history limits.
  if (flow.reclaimPollSeconds > 0 && flow.reclaimWaitSeconds / flow.reclaimPollSeconds > MAX_RECLAIM_LOOKS) {
    input.errors.push(
      `SPOT_GUARD_RECLAIM_WAIT="${read(input, 'SPOT_GUARD_RECLAIM_WAIT')}" with SPOT_GUARD_RECLAIM_POLL_INTERVAL="${read(input, 'SPOT_GUARD_RECLAIM_POLL_INTERVAL')}" means more than ${MAX_RECLAIM_LOOKS} looks: expected a longer interval or a shorter wait`,
    );
  }
  return flow;
}

/** The connection to the Temporal server: its address, namespace, task queues, and TLS or API key. */
function temporalSettings(input: ConfigInput): TemporalSettings {
  const { env, errors } = input;
  const address = env.TEMPORAL_ADDRESS?.trim() || undefined;
  if (address && !/^[^\s:/]+:\d{1,5}$/.test(address)) {
    errors.push(`TEMPORAL_ADDRESS="${address}" is not host:port (e.g. temporal-frontend.temporal:7233)`);
  }
  const tlsEnabled = bool(input, 'TEMPORAL_TLS');
  const certPath = env.TEMPORAL_TLS_CLIENT_CERT_PATH?.trim() || undefined;
  const keyPath = env.TEMPORAL_TLS_CLIENT_KEY_PATH?.trim() || undefined;
  if (Boolean(certPath) !== Boolean(keyPath)) {
    errors.push('TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH must be set together for mTLS');
  }
  const apiKey = env.TEMPORAL_API_KEY?.trim() || undefined;
  const useTls = tlsEnabled || Boolean(certPath) || Boolean(apiKey);
  if (!address && (useTls || apiKey)) {
    errors.push('TEMPORAL_TLS / TEMPORAL_API_KEY / client certificates need TEMPORAL_ADDRESS: the embedded dev server speaks plain gRPC');
  }
  // In a pod the dev server's history would die with the pod, and every replica would run a server of its own.
  const allowDevServer = bool(input, 'SPOT_GUARD_ALLOW_DEV_SERVER_IN_CLUSTER');
  if (!address && env.KUBERNETES_SERVICE_HOST?.trim() && !allowDevServer) {
    errors.push(
      'TEMPORAL_ADDRESS is not set in a Kubernetes cluster (KUBERNETES_SERVICE_HOST is set): set TEMPORAL_ADDRESS to your Temporal frontend (e.g. temporal-frontend.temporal:7233); the embedded dev server keeps its workflows in the pod and loses them with it (SPOT_GUARD_ALLOW_DEV_SERVER_IN_CLUSTER=true runs it anyway, for a throwaway test cluster)',
    );
  }
  return {
    address,
    namespace: read(input, 'TEMPORAL_NAMESPACE'),
    taskQueue: read(input, 'TEMPORAL_TASK_QUEUE'),
    groupTaskQueue: groupTaskQueueOf(read(input, 'TEMPORAL_TASK_QUEUE')),
    apiKey,
    tls: useTls
      ? {
          serverName: env.TEMPORAL_TLS_SERVER_NAME?.trim() || undefined,
          serverRootCaPath: env.TEMPORAL_TLS_SERVER_CA_PATH?.trim() || undefined,
          clientCertPath: certPath,
          clientKeyPath: keyPath,
        }
      : undefined,
  };
}

function heapGrowthSetting(input: ConfigInput): HeapGrowthSetting {
  const growthText = read(input, 'SPOT_GUARD_HEAP_GROWTH_PERCENT');
  const growthWord = growthText.toLowerCase();
  const growthPercent = Number(growthText);
  if (growthWord === 'off') return 'off';
  if (/^\d+$/.test(growthText) && growthPercent >= 10 && growthPercent <= 400) return growthPercent;
  if (growthWord !== 'auto') {
    input.errors.push(`SPOT_GUARD_HEAP_GROWTH_PERCENT="${growthText}" is not a heap growth: expected auto, off, or a whole number of percent from 10 to 400`);
  }
  return 'auto';
}

function metricsAddressSetting(input: ConfigInput): string | undefined {
  const metricsText = read(input, 'SPOT_GUARD_METRICS_ADDRESS');
  if (metricsText.toLowerCase() === 'off') return undefined;
  if (!isBindAddress(metricsText)) {
    input.errors.push(`SPOT_GUARD_METRICS_ADDRESS="${metricsText}" is not an address to listen on: expected off, or an IP address and port (e.g. 0.0.0.0:9464 or [::]:9464)`);
  }
  return metricsText;
}

function healthAddressSetting(input: ConfigInput): string | undefined {
  const text = read(input, 'SPOT_GUARD_HEALTH_ADDRESS');
  if (text.toLowerCase() === 'off') return undefined;
  if (!isBindAddress(text)) {
    input.errors.push(`SPOT_GUARD_HEALTH_ADDRESS="${text}" is not an address to listen on: expected off, or an IP address and port (e.g. 0.0.0.0:8080)`);
  }
  return text;
}

/** How the worker process runs: dry run, cache and slot sizes, memory, sticky queue, metrics. */
function workerTuning(input: ConfigInput): Pick<
  WorkerConfig,
  'dryRun' | 'maxCachedWorkflows' | 'workflowTaskSlots' | 'heapGrowth' | 'stickyQueueTimeoutSeconds' | 'metricsAddress'
> {
  const dryRun = bool(input, 'SPOT_GUARD_DRY_RUN');
  const cachedText = read(input, 'SPOT_GUARD_MAX_CACHED_WORKFLOWS');
  const maxCachedWorkflows = Number(cachedText);
  if (!/^\d+$/.test(cachedText) || maxCachedWorkflows < 10 || maxCachedWorkflows > 10_000) {
    input.errors.push(`SPOT_GUARD_MAX_CACHED_WORKFLOWS="${cachedText}" is not a cache size: expected a whole number from 10 to 10000`);
  }
  const slotsText = read(input, 'SPOT_GUARD_WORKFLOW_TASK_SLOTS');
  const workflowTaskSlots = Number(slotsText);
  if (!/^\d+$/.test(slotsText) || workflowTaskSlots < 2 || workflowTaskSlots > 1000) {
    input.errors.push(`SPOT_GUARD_WORKFLOW_TASK_SLOTS="${slotsText}" is not a number of workflow tasks at once: expected a whole number from 2 to 1000`);
  }
  const heapGrowth = heapGrowthSetting(input);
  const stickyQueueTimeoutSeconds = seconds(input, 'SPOT_GUARD_STICKY_QUEUE_TIMEOUT', 1, 300);
  const metricsAddress = metricsAddressSetting(input);
  return {
    dryRun,
    maxCachedWorkflows,
    workflowTaskSlots,
    heapGrowth,
    stickyQueueTimeoutSeconds,
    ...(metricsAddress !== undefined ? { metricsAddress } : {}),
  };
}

/** The signalers' intake: off unless an address is given; HTTPS, unless plain HTTP is allowed for a local test. */
function intakeSettings(input: ConfigInput): IntakeConfig | undefined {
  const address = read(input, 'SPOT_GUARD_INTAKE_ADDRESS');
  if (address.toLowerCase() === 'off') return undefined;
  if (!isBindAddress(address)) input.errors.push(`SPOT_GUARD_INTAKE_ADDRESS="${address}" is not an address to listen on: expected off, or an IP address and port (e.g. 0.0.0.0:8443)`);
  const certFile = input.env.SPOT_GUARD_INTAKE_TLS_CERT?.trim();
  const keyFile = input.env.SPOT_GUARD_INTAKE_TLS_KEY?.trim();
  const allowHttp = bool(input, 'SPOT_GUARD_INTAKE_ALLOW_HTTP');
  if (!certFile !== !keyFile || (!certFile && !allowHttp)) {
    input.errors.push('SPOT_GUARD_INTAKE_TLS_CERT and SPOT_GUARD_INTAKE_TLS_KEY: expected both (PEM files of the intake\'s certificate and key; the signalers\' tokens must not cross the network in clear), or SPOT_GUARD_INTAKE_ALLOW_HTTP=true for a local test');
  }
  const account = read(input, 'SPOT_GUARD_SIGNALER_SERVICE_ACCOUNT');
  if (!/^[a-z0-9][-a-z0-9]*\/[a-z0-9][-a-z0-9.]*$/.test(account)) input.errors.push(`SPOT_GUARD_SIGNALER_SERVICE_ACCOUNT="${account}": expected <namespace>/<name>, like spot-guard/spot-guard-signaler`);
  const rateText = read(input, 'SPOT_GUARD_INTAKE_RATE');
  const rate = Number(rateText);
  if (!Number.isInteger(rate) || rate < 1 || rate > 600) input.errors.push(`SPOT_GUARD_INTAKE_RATE="${rateText}": expected a whole number of requests a minute per node from 1 to 600`);
  return {
    address,
    ...(certFile && keyFile ? { tls: { certFile, keyFile } } : {}),
    audience: read(input, 'SPOT_GUARD_INTAKE_AUDIENCE'),
    signalerServiceAccount: account,
    requestsPerNodePerMinute: rate,
  };
}

/** The embedded Temporal dev server, started when TEMPORAL_ADDRESS is not set. */
function devServerSettings(input: ConfigInput): DevServerSettings {
  const cache = cacheDir(input.env);
  return {
    temporalCli: input.env.SPOT_GUARD_TEMPORAL_CLI?.trim() || join(cache, 'venv', 'bin', 'temporal'),
    port: port(input, 'SPOT_GUARD_DEV_SERVER_PORT'),
    uiPort: port(input, 'SPOT_GUARD_DEV_UI_PORT'),
    dbFile: input.env.SPOT_GUARD_DEV_DB?.trim() || join(cache, 'dev-server.sqlite'),
  };
}

export function loadConfig(env: Env): ConfigResult {
  const input: ConfigInput = { env, errors: removedSettingErrors(env) };
  const spotGuardEnabled = bool(input, 'ENABLE_SPOT_GUARD');
  const pairs = pairSource(input);
  const taints = taintSettings(input);
  const logLevel = logLevelSetting(input);
  const logFormat = logFormatChecked(input);
  const flow = flowSettings(input, spotGuardEnabled, taints);
  const temporal = temporalSettings(input);
  const { dryRun, ...tuning } = workerTuning(input);
  const devServer = devServerSettings(input);
  const intake = intakeSettings(input);
  const healthAddress = healthAddressSetting(input);
  if (input.errors.length > 0) return { ok: false, errors: input.errors };
  return {
    ok: true,
    config: { spotGuardEnabled, pairs, flow, temporal, devServer, dryRun, logLevel, logFormat, ...tuning, ...(intake ? { intake } : {}), ...(healthAddress ? { healthAddress } : {}) },
  };
}
