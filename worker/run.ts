// The worker's whole life, shared by its entry points (worker/main.ts, and the benchmark's bench/naive/worker.ts, which
// adds its own workflow and activities): validate the configuration, connect to Temporal (or start the embedded dev
// server), run the workflows and activities until SIGTERM/SIGINT, then finish the tasks in hand and return.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { CoreV1Api, KubeConfig, PolicyV1Api } from '@kubernetes/client-node';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { createActivities, DomainMetrics, ensureMonitor, fixedPairs, type ProtectedPairs, TagDiscovery, type WebhookConfig, webhookQueue } from '../activities/index.js';
import { describePairs, ENABLED_TAG, FALLBACK_TAG } from '../activities/pair-rules.js';
import { watchNodes } from '../activities/node-watch.js';
import { type IntakeConfig, loadConfig, logFormatSetting, type PairSource, type WorkerConfig } from './config.js';
import { type DevServer, startDevServer } from './dev-server.js';
import { reuseConnections } from './kubernetes-connections.js';
import { chooseLogFormat, createWorkerLog, sdkLogFunction } from './log.js';
import { applyHeapGrowth, heapGrowthPercent, launchSettingsMissing, memoryLimitBytes, memoryNote } from './memory.js';
import { prometheusTelemetry, reportProcessMemory } from './metrics.js';
import { type IntakeContext, startIntake } from './intake-server.js';
import { startHealthServer } from './health.js';
import { preflightProblems, type PreflightTarget } from './preflight.js';
import { ensureSearchAttributes } from './search-attributes.js';
import { connectionOptions } from './temporal-connection.js';
import { loadWebhookConfig } from './webhook-config.js';

type ActivityFunction = (...args: never[]) => Promise<unknown>;

export interface RunWorkerOptions {
  /** A prebuilt workflow bundle; default: the one `npm run build` makes (dist/workflow-bundle.js). */
  workflowBundlePath?: string;
  /** The workflows' entry module, bundled at start when there is no prebuilt bundle; default: workflows/index.js. */
  workflowsPath?: string;
  /** Activities registered beside Spot Guard's own, none of them under one of its names. */
  extraActivities?: Record<string, ActivityFunction>;
}

/** Capacity and monitor workflows: two per spot/on-demand pair. */
const GROUP_WORKFLOWS_CACHED = 20;

/** The format is read before the configuration, so that even its errors come in the format chosen. */
const logFormat = chooseLogFormat(logFormatSetting(process.env) ?? 'auto', process.stdout.isTTY === true);
const log = createWorkerLog(logFormat);
const say = (message: string): void => log.info(message);

/** Runs the worker until SIGTERM/SIGINT. Returns the process's exit status: 0 stopped, 2 refused to start. */
export async function runWorker(options: RunWorkerOptions = {}): Promise<number> {
  const loaded = loadConfig(process.env);
  const webhook = loadWebhookConfig(process.env);
  if (!loaded.ok || !webhook.ok) {
    for (const error of [...(loaded.ok ? [] : loaded.errors), ...(webhook.ok ? [] : webhook.errors)]) log.error(`configuration error: ${error}`);
    log.error('refusing to start: fix the values above (see docs/configuration.md)');
    return 2;
  }
  const { config } = loaded;
  if (process.argv.includes('--check-config')) {
    // The command's answer, not a log line: the same plain line whatever the log format, for scripts to read.
    process.stdout.write(`configuration valid: ${configSummary(config)}\n`);
    return 0;
  }
  // Before the SDK creates its workflow threads, which take the process's V8 flags as they start.
  const memoryLimit = memoryLimitBytes();
  const growthPercent = heapGrowthPercent(config.heapGrowth, memoryLimit);
  if (growthPercent !== undefined) applyHeapGrowth(growthPercent);

  const autoScaling = new AutoScalingClient({});
  let region: string;
  try {
    region = await autoScaling.config.region();
  } catch {
    log.error('configuration error: no AWS region: set AWS_REGION (or a region in your AWS profile)');
    return 2;
  }
  if (!installRuntime(config)) return 2;
  say(memoryNote(memoryLimit, growthPercent, launchSettingsMissing()));
  const stopMemoryReport = config.metricsAddress ? reportProcessMemory(Runtime.instance().metricMeter) : undefined;
  if (config.metricsAddress) say(`Prometheus metrics on http://${config.metricsAddress}/metrics`);

  const kubeConfig = kubernetesConfig();
  const pairs = protectedPairs(config.pairs, autoScaling);
  // While the dev server starts and the workers are made; its lines come before "worker polling".
  const preflight = reportPreflight(config, { autoScaling, region, kubeConfig, pairs });
  let devServer: DevServer | undefined;
  try {
    if (!config.temporal.address) devServer = await startDevServer(config.devServer, config.temporal.namespace, say);
    return await serve(config, { autoScaling, kubeConfig, preflight, pairs, webhook: webhook.config }, options, devServer);
  } finally {
    if (pairs instanceof TagDiscovery) pairs.stop();
    stopMemoryReport?.();
    await devServer?.stop();
  }
}

/** What a valid configuration amounts to, in one line (`--check-config`); no secrets, only whether they are set. */
function configSummary(config: WorkerConfig): string {
  return JSON.stringify({
    spotGuardEnabled: config.spotGuardEnabled,
    pairs: config.pairs.kind === 'tags' ? `found by tags every ${config.pairs.refreshSeconds} s` : describePairs(config.pairs.pairs),
    // The one-pair shorthand's names, as scripts have read them.
    ...(config.pairs.kind === 'list' && config.pairs.pairs.length === 1 ? config.pairs.pairs[0] : {}),
    temporal: config.temporal.address ?? 'embedded dev server',
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    tls: Boolean(config.temporal.tls),
    apiKey: Boolean(config.temporal.apiKey),
    intake: config.intake?.address ?? 'off',
    metrics: config.metricsAddress ?? 'off',
    dryRun: config.dryRun,
  });
}

/** Runs the worker and ends the process with its status: what an entry point does. */
export function runWorkerProcess(options: RunWorkerOptions = {}): void {
  runWorker(options).then(
    (code) => process.exit(code),
    (error: unknown) => {
      log.error('fatal', { error });
      process.exit(1);
    },
  );
}

/** The SDK's native core logs through the same logger and level as the rest of the worker. False: refuse to start. */
function installRuntime(config: WorkerConfig): boolean {
  try {
    Runtime.install({
      logger: new DefaultLogger(config.logLevel, sdkLogFunction(logFormat)),
      telemetryOptions: {
        logging: { filter: { core: config.logLevel, other: 'ERROR' }, forward: {} },
        ...(config.metricsAddress ? { metrics: prometheusTelemetry(config.metricsAddress) } : {}),
      },
    });
    return true;
  } catch (error) {
    if (!config.metricsAddress) throw error;
    // The SDK binds the metrics port while it starts: a port taken or an address not on this host fails here.
    log.error(`cannot serve metrics on SPOT_GUARD_METRICS_ADDRESS="${config.metricsAddress}" (${(error as Error).message}): choose a free port on this host, or off`);
    return false;
  }
}

/** What the worker talks to besides Temporal, made before it connects, and the preflight's run on them. */
interface Peers {
  autoScaling: AutoScalingClient;
  kubeConfig: KubeConfig;
  preflight: Promise<void>;
  pairs: ProtectedPairs;
  /** Where announced steps are sent too (SPOT_GUARD_WEBHOOK_URL); none: no webhook. */
  webhook?: WebhookConfig;
}

/** The pairs protected: a fixed list, or the tags' pairs, discovered now and every refresh interval. */
function protectedPairs(source: PairSource, autoScaling: AutoScalingClient): ProtectedPairs {
  if (source.kind === 'list') return fixedPairs(source.pairs, source.setting);
  const discovery = new TagDiscovery(autoScaling, { info: say, warn: (message) => log.warn(message) });
  void discovery.start(source.refreshSeconds);
  return discovery;
}

/** One revert-to-spot monitor per pair, started unless it runs already (a pair found later gets its own then). */
async function ensureMonitors(client: Client, config: WorkerConfig, pairs: ProtectedPairs): Promise<void> {
  const start = async (found: readonly { spotAsgName: string; onDemandAsgName: string }[]): Promise<void> => {
    for (const pair of found) say(`revert-to-spot monitor running as ${await ensureMonitor(client, config.temporal.groupTaskQueue, pair.spotAsgName, pair.onDemandAsgName)}`);
  };
  if (pairs instanceof TagDiscovery) await pairs.onPairs(start);
  else await start(await pairs.current());
}

/** Connected to Temporal at `devServer`'s address or the configured one: polls until SIGTERM/SIGINT. */
async function serve(config: WorkerConfig, { autoScaling, kubeConfig, preflight, pairs, webhook }: Peers, options: RunWorkerOptions, devServer?: DevServer): Promise<number> {
  const address = devServer?.address ?? config.temporal.address;
  if (!address) throw new Error('no Temporal address: set TEMPORAL_ADDRESS, or leave it unset for the embedded dev server');
  const connectOptions = await connectionOptions(config.temporal, address);
  const connection = await Connection.connect(connectOptions);
  const client = new Client({ connection, namespace: config.temporal.namespace });
  if (!(await registerSearchAttributes(connection, config.temporal.namespace))) return 2;

  const kubernetes = kubeConfig.makeApiClient(CoreV1Api);
  const nodeWatch = watchNodes(kubeConfig, kubernetes, { onProblem: (message) => log.warn(message) });
  const metrics = new DomainMetrics(Runtime.instance().metricMeter);
  const activities = withExtraActivities(
    createActivities({
      autoScaling,
      kubernetes,
      nodeWatch,
      kubernetesPolicy: kubeConfig.makeApiClient(PolicyV1Api),
      temporal: client,
      taskQueue: config.temporal.taskQueue,
      groupTaskQueue: config.temporal.groupTaskQueue,
      settings: config.flow,
      pairs,
      dryRun: config.dryRun,
      // Messages go to the webhook workflow on the groups' queue: durable, in order, one delivery at a time.
      announcer: { events: kubernetes, metrics, ...(webhook ? { webhook: webhookQueue(client, config.temporal.groupTaskQueue, webhook) } : {}) },
      ...(webhook ? { webhook } : {}),
    }),
    options.extraActivities,
  );
  const workers = await createWorkers(config, await NativeConnection.connect(connectOptions), workflowCode(options), activities);
  if (config.spotGuardEnabled) await ensureMonitors(client, config, pairs);
  await preflight;
  say(
    `worker polling task queues "${config.temporal.taskQueue}" and "${config.temporal.groupTaskQueue}" in namespace "${config.temporal.namespace}" at ${address}` +
      ` (${config.pairs.kind === 'tags' ? `pairs found by tags every ${config.pairs.refreshSeconds} s` : `pairs ${describePairs(config.pairs.pairs)}`}${config.dryRun ? ', DRY RUN' : ''})`,
  );
  if (devServer) say(`Temporal UI: ${devServer.uiUrl}`);
  // Which steps and in which shape; never the URL, which carries the chat's token.
  if (webhook) say(`webhook on: ${webhook.format} messages for ${[...webhook.steps].join(', ')}`);
  const intake = config.intake ? await serveIntake(config, config.intake, { kubeConfig, verifyProtectedInstance: activities.verifyProtectedInstance, temporal: client }) : undefined;
  const health = config.healthAddress ? await startHealthServer(config.healthAddress, () => workers.map((worker) => worker.getState())) : undefined;
  if (config.healthAddress) say(`probes on http://${config.healthAddress}/healthz and /readyz`);
  // Both return after SIGTERM/SIGINT once their in-flight tasks are done.
  await Promise.all(workers.map((worker) => worker.run()));
  await intake?.close();
  await health?.close();
  await nodeWatch.stop();
  await connection.close();
  say('worker stopped');
  return 0;
}

/** The signalers' intake (SPOT_GUARD_INTAKE_ADDRESS), with its refusals in the worker's log. */
async function serveIntake(config: WorkerConfig, intakeConfig: IntakeConfig, context: Pick<IntakeContext, 'kubeConfig' | 'verifyProtectedInstance' | 'temporal'>): Promise<{ close(): Promise<void> }> {
  const intakeLog = {
    info: (message: string, fields?: Record<string, unknown>) => log.info(`intake: ${message}`, fields),
    warn: (message: string, fields?: Record<string, unknown>) => log.warn(`intake: ${message}`, fields),
  };
  const intake = await startIntake(intakeConfig, { ...context, taskQueue: config.temporal.taskQueue, log: intakeLog });
  say(`signalers' intake on ${intakeConfig.tls ? 'https' : 'http'}://${intakeConfig.address}${intakeConfig.tls ? '' : ' (plain HTTP: SPOT_GUARD_INTAKE_ALLOW_HTTP=true, for a local test only)'}`);
  return intake;
}

/** Without them every workflow task that sets one fails: false (refuse to start) rather than run stuck workflows. */
async function registerSearchAttributes(connection: Connection, namespace: string): Promise<boolean> {
  try {
    const added = await ensureSearchAttributes(connection, namespace);
    if (added.length > 0) say(`registered search attributes: ${added.join(', ')}`);
    return true;
  } catch (error) {
    log.error(
      `cannot register search attributes on namespace "${namespace}" (${(error as Error).message}): ` +
        'add SpotGuardInstanceId, SpotGuardNode, SpotGuardAsg, SpotGuardPhase and SpotGuardOutcome as Keyword, then start again',
    );
    return false;
  }
}

function kubernetesConfig(): KubeConfig {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromDefault();
  reuseConnections(kubeConfig);
  return kubeConfig;
}

/**
 * Each problem in one line at start (no kubeconfig among them); then the worker runs anyway, its activities retrying
 * until the cause is fixed (their failures of a known cause are logged in one line each, worker/log.ts).
 */
async function reportPreflight(config: WorkerConfig, target: { autoScaling: AutoScalingClient; region: string; kubeConfig: KubeConfig; pairs: ProtectedPairs }): Promise<void> {
  const problems = await preflightGroups(config.pairs, target.pairs)
    .then((groups) =>
      preflightProblems({
        ...target,
        groups,
        ...(config.intake ? { intakeNamespace: config.intake.signalerServiceAccount.split('/')[0] } : {}),
      }),
    )
    .catch((error: unknown) => [`the preflight itself failed (${(error as Error).message}): the worker starts without it`]);
  for (const problem of problems) log.warn(`preflight: ${problem}; the worker starts anyway and retries until this is fixed`, { check: problem.split(':', 1)[0]?.toLowerCase() });
  if (problems.length === 0) say(`preflight: groups of the pairs ${describePairs(await target.pairs.current())} readable, Kubernetes API reachable with the worker's rights`);
}

/** Every group of every pair, each with where it was named: the setting, or the tag that found it. */
async function preflightGroups(source: PairSource, pairs: ProtectedPairs): Promise<PreflightTarget['groups']> {
  const found = await pairs.current();
  const shorthand = source.kind === 'list' && source.setting !== 'SPOT_GUARD_PAIRS';
  return found.flatMap((pair) => [
    { setting: source.kind === 'tags' ? `tag ${ENABLED_TAG}` : shorthand ? 'SPOT_ASG_NAME' : 'SPOT_GUARD_PAIRS', name: pair.spotAsgName },
    { setting: source.kind === 'tags' ? `tag ${FALLBACK_TAG} of "${pair.spotAsgName}"` : shorthand ? 'ON_DEMAND_ASG_NAME' : 'SPOT_GUARD_PAIRS', name: pair.onDemandAsgName },
  ]);
}

/** An extra activity under one of Spot Guard's names would silently replace it in every workflow: refused. */
function withExtraActivities<A extends object>(own: A, extra: Record<string, ActivityFunction> = {}): A & Record<string, ActivityFunction> {
  const clashes = Object.keys(extra).filter((name) => name in own);
  if (clashes.length > 0) throw new Error(`extra activities would replace Spot Guard's own: ${clashes.join(', ')}`);
  return { ...own, ...extra };
}

/** The bundle made by `npm run build` when there is one; bundling here instead would run webpack inside the worker. */
function workflowCode(options: RunWorkerOptions): { workflowBundle: { codePath: string } } | { workflowsPath: string } {
  const bundle = options.workflowBundlePath ?? fileURLToPath(new URL('../workflow-bundle.js', import.meta.url));
  if (existsSync(bundle)) return { workflowBundle: { codePath: bundle } };
  return { workflowsPath: options.workflowsPath ?? fileURLToPath(new URL('../workflows/index.js', import.meta.url)) };
}

async function createWorkers(
  config: WorkerConfig,
  connection: NativeConnection,
  code: ReturnType<typeof workflowCode>,
  activities: object,
): Promise<Worker[]> {
  const common = {
    connection,
    namespace: config.temporal.namespace,
    ...code,
    activities,
    // In a wave tasks queue longer than the SDK's 10 s; moving them off this worker's queue only adds replays.
    stickyQueueScheduleToStartTimeout: `${config.stickyQueueTimeoutSeconds} seconds`,
    // On SIGTERM (a rollout), running activities get this long to finish before they are cancelled and retried.
    shutdownGraceTime: '30 seconds',
  };
  return [
    await Worker.create({
      ...common,
      taskQueue: config.temporal.taskQueue,
      // A wave keeps hundreds of workflows open at once; an evicted one replays its short history on its next task.
      maxCachedWorkflows: config.maxCachedWorkflows,
      // A task holds its slot while its local activities (taint, cordon) wait on the Kubernetes API: in a wave the
      // SDK's 40 slots were all held by tasks waiting on I/O while new answers queued behind them.
      maxConcurrentWorkflowTaskExecutions: config.workflowTaskSlots,
    }),
    // The per-group workflows (a few, long histories) on slots and a cache of their own.
    await Worker.create({ ...common, taskQueue: config.temporal.groupTaskQueue, maxCachedWorkflows: GROUP_WORKFLOWS_CACHED }),
  ];
}
