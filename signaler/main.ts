// The on-node signaler (`node dist/signaler/main.js`, the image's `signaler` entry point): polls IMDS every 2 s with
// IMDSv2 tokens and reports this instance's rebalance recommendation and interruption notice to the intake. It holds
// no AWS, Kubernetes or Temporal credentials. /healthz answers while the process runs; /readyz once it has read its
// instance id from IMDS. SIGTERM or SIGINT stops the polls and the retries and closes the probe server.
import { createServer } from 'node:http';
import { loadSignalerConfig, type SignalerSettings } from './config.js';
import { ImdsClient } from './imds.js';
import { intakeDelivery } from './intake-client.js';
import { NoticeWatch, type WatchLog } from './notice-watch.js';

/** One JSON object per line, as the worker logs. */
const log: WatchLog & { error(message: string, fields?: Record<string, unknown>): void } = {
  info: (message, fields) => console.log(JSON.stringify({ time: new Date().toISOString(), level: 'INFO', message, ...fields })),
  warn: (message, fields) => console.log(JSON.stringify({ time: new Date().toISOString(), level: 'WARN', message, ...fields })),
  error: (message, fields) => console.error(JSON.stringify({ time: new Date().toISOString(), level: 'ERROR', message, ...fields })),
};

function main(): void {
  const loaded = loadSignalerConfig(process.env);
  if ('errors' in loaded) {
    for (const error of loaded.errors) log.error(error);
    process.exit(2);
  }
  if (process.argv.includes('--check-config')) {
    const { nodeName, intakeUrl, imdsUrl, pollIntervalMs, rebalanceMonitoring } = loaded.settings;
    log.info('configuration valid', { nodeName, intakeUrl, imdsUrl, pollIntervalMs, rebalanceMonitoring });
    process.exit(0);
  }
  run(loaded.settings);
}

function run(settings: SignalerSettings): void {
  const imds = new ImdsClient({ baseUrl: settings.imdsUrl, allowImdsV1: settings.imdsAllowV1 });
  const delivery = intakeDelivery({ intakeUrl: settings.intakeUrl, tokenFile: settings.tokenFile, ...(settings.intakeCaFile ? { caFile: settings.intakeCaFile } : {}) });
  const watch = new NoticeWatch(imds, delivery, log, { rebalanceMonitoring: settings.rebalanceMonitoring });
  let ready = false;
  let lastError = '';
  let timer: NodeJS.Timeout | undefined;
  const poll = async (): Promise<void> => {
    try {
      await watch.look();
      ready = true;
      lastError = '';
    } catch (error) {
      const message = (error as Error).message;
      // Logged when it changes, not every 2 s while IMDS stays down.
      if (message !== lastError) log.warn('IMDS poll failed: polling on', { error: message });
      lastError = message;
    }
    timer = setTimeout(() => void poll(), settings.pollIntervalMs);
  };
  const probes = createServer((req, res) => {
    const ok = req.url === '/healthz' || (req.url === '/readyz' && ready);
    res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' });
    res.end(ok ? 'ok\n' : `not ready${lastError ? `: ${lastError}` : ''}\n`);
  });
  const [host, port] = [settings.healthAddress.slice(0, settings.healthAddress.lastIndexOf(':')), Number(settings.healthAddress.split(':').pop())];
  probes.listen(port, host || undefined, () => log.info('signaler started', { nodeName: settings.nodeName, intake: settings.intakeUrl, pollIntervalMs: settings.pollIntervalMs, rebalanceMonitoring: settings.rebalanceMonitoring, probes: settings.healthAddress }));
  const stop = (signal: string): void => {
    log.info('signaler stopping', { signal, undelivered: watch.undelivered() });
    clearTimeout(timer);
    watch.stop();
    probes.close(() => process.exit(0));
    probes.closeAllConnections();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  void poll();
}

main();
