// docker-compose.yml, the local stack (docs/local-stack.md), checked without a Docker engine: the real Compose CLI
// (built by scripts/peers.sh) validates and resolves it with `config`, and the worker's and the signaler's own
// configuration validation (`--check-config`) run on exactly the environment the file gives each of them.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { isAbsolute, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { composePath } from '../scripts/peers/peers.js';
import { reuseConnections } from '../worker/kubernetes-connections.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const composeFile = join(repoRoot, 'docker-compose.yml');
const workerMain = fileURLToPath(new URL('../worker/main.js', import.meta.url));
const signalerMain = fileURLToPath(new URL('../signaler/main.js', import.meta.url));

interface Volume {
  type: string;
  source?: string;
  target: string;
  read_only?: boolean;
}
interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[] | null;
  entrypoint?: string[] | null;
  environment?: Record<string, string | null>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test?: string[]; disable?: boolean };
  volumes?: Volume[];
  ports?: { host_ip?: string; target: number; published?: string }[];
  privileged?: boolean;
  read_only?: boolean;
  cap_drop?: string[];
  network_mode?: string;
}
interface ComposeConfig {
  services: Record<string, Service>;
}

/** A made-up secret put into the environment `docker compose config` runs in: it must not reach any service. */
const HOST_SECRET = 'host-secret-8c1f0e2d';

function runCompose(file: string, extraEnv: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  // Only PATH and HOME from this process: a developer's COMPOSE_* or DOCKER_* settings must not change the result.
  const env = { PATH: process.env.PATH ?? '', HOME: tmpdir(), ...extraEnv };
  const result = spawnSync(composePath(), ['-f', file, 'config', '--format', 'json'], { env, encoding: 'utf8', timeout: 60_000 });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function composeConfig(): ComposeConfig {
  const { status, stdout, stderr } = runCompose(composeFile);
  assert.equal(status, 0, `docker compose config refused docker-compose.yml:\n${stderr}`);
  return JSON.parse(stdout) as ComposeConfig;
}

function service(config: ComposeConfig, name: string): Service {
  const found = config.services[name];
  assert.ok(found, `no service ${name} in docker-compose.yml (services: ${Object.keys(config.services).join(', ')})`);
  return found;
}

/** A service's environment exactly as the container gets it: resolved by Compose, nothing of this process's added. */
function environmentOf(entry: Service): Record<string, string> {
  return Object.fromEntries(Object.entries(entry.environment ?? {}).map(([key, value]) => [key, value ?? '']));
}

function checkConfig(main: string, environment: Record<string, string>): { status: number | null; output: string } {
  const result = spawnSync(process.execPath, [main, '--check-config'], { env: { PATH: process.env.PATH ?? '', ...environment }, encoding: 'utf8', timeout: 60_000 });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

const hostPort = (address: string): [string, number] => [address.slice(0, address.lastIndexOf(':')), Number(address.split(':').pop())];

describe('docker-compose.yml, validated by the Compose CLI', function () {
  this.timeout(120_000);
  let config: ComposeConfig;

  before(function () {
    config = composeConfig();
  });

  it('the validator is really used: a copy naming a service that does not exist is refused, the file itself accepted', function () {
    const dir = mkdtempSync(join(tmpdir(), 'spot-guard-compose-'));
    try {
      const broken = join(dir, 'docker-compose.yml');
      const text = readFileSync(composeFile, 'utf8');
      const misspelt = text.replace('temporal: { condition: service_healthy }', 'temporall: { condition: service_healthy }');
      assert.notEqual(misspelt, text, 'the dependency to misspell was found');
      writeFileSync(broken, misspelt);
      const refused = runCompose(broken);
      assert.notEqual(refused.status, 0, `a dependency on an undefined service was accepted:\n${refused.stdout.slice(0, 400)}`);
      assert.match(refused.stderr, /temporall/, 'the refusal names the undefined service');
      // And one whose value has the wrong type (the compose-spec schema): a port that is not a port.
      writeFileSync(broken, text.replace('- 127.0.0.1:8080:8080', '- { target: not-a-port }'));
      assert.notEqual(runCompose(broken).status, 0, 'a port "not-a-port" was accepted');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    assert.ok(Object.keys(config.services).length >= 9, `services: ${Object.keys(config.services).join(', ')}`);
  });

  it('every image is pinned by a tag (not latest, not untagged)', function () {
    for (const [name, entry] of Object.entries(config.services)) {
      assert.ok(entry.image, `service ${name} names no image`);
      const tag = /^(?:[^/]+\/)*[^/:]+:([\w][\w.-]*)$/.exec(entry.image)?.[1];
      assert.ok(tag, `service ${name}: image ${entry.image} has no tag`);
      assert.notEqual(tag, 'latest', `service ${name}: image ${entry.image} is not pinned`);
    }
  });

  it('the worker and the signaler are built from the Dockerfile, each with its entry point, hardened as their pods', function () {
    for (const [name, entryPoint] of [['worker', 'worker'], ['signaler', 'signaler']] as const) {
      const entry = service(config, name);
      assert.equal(entry.build?.dockerfile, 'Dockerfile', `${name} is built from the Dockerfile`);
      assert.equal(relative(repoRoot, entry.build?.context ?? ''), '', `${name} is built from the repository's root`);
      assert.equal(entry.entrypoint, null, `${name} keeps the image's entry point`);
      assert.deepEqual(entry.command, [entryPoint]);
      assert.equal(entry.read_only, true, `${name}: read-only root file system`);
      assert.deepEqual(entry.cap_drop, ['ALL'], `${name}: all capabilities dropped`);
    }
  });

  it('starts in order: the worker after Temporal, AWS, Kubernetes and the stand-in are healthy, the signaler after the worker', function () {
    const healthyNeeds = (name: string): string[] =>
      Object.entries(service(config, name).depends_on ?? {})
        .filter(([, dependency]) => dependency.condition === 'service_healthy')
        .map(([dependency]) => dependency)
        .sort();
    assert.deepEqual(healthyNeeds('worker'), ['kwok', 'moto', 'stand-in', 'temporal']);
    assert.deepEqual(healthyNeeds('signaler'), ['stand-in', 'worker']);
    assert.deepEqual(healthyNeeds('temporal'), ['postgresql']);
    assert.deepEqual(healthyNeeds('temporal-ui'), ['temporal']);
    // Compose does not check this: a service waited on until healthy must have a health check, or the wait never ends.
    for (const [name, entry] of Object.entries(config.services)) {
      for (const [dependency, { condition }] of Object.entries(entry.depends_on ?? {})) {
        if (condition !== 'service_healthy') continue;
        const check = service(config, dependency).healthcheck;
        assert.ok(check?.test?.length && !check.disable, `${name} waits for ${dependency} to be healthy, which has no health check`);
      }
    }
  });

  it('reads no host secrets: a secret in the environment it is run with reaches no service; binds only files of the repository; ports on 127.0.0.1', function () {
    const hostEnv = { AWS_SECRET_ACCESS_KEY: HOST_SECRET, AWS_ACCESS_KEY_ID: HOST_SECRET, AWS_SESSION_TOKEN: HOST_SECRET, AWS_PROFILE: HOST_SECRET, TEMPORAL_API_KEY: HOST_SECRET, KUBECONFIG: `/home/${HOST_SECRET}/.kube/config` };
    const { status, stdout, stderr } = runCompose(composeFile, hostEnv);
    assert.equal(status, 0, stderr);
    assert.ok(!stdout.includes(HOST_SECRET), 'a value of the host environment reached the resolved configuration');
    for (const [name, entry] of Object.entries(config.services)) {
      assert.notEqual(entry.privileged, true, `${name} is privileged`);
      assert.notEqual(entry.network_mode, 'host', `${name} shares the host's network`);
      for (const volume of (entry.volumes ?? []).filter((v) => v.type === 'bind')) {
        const inRepo = relative(repoRoot, volume.source ?? '/');
        assert.ok(!inRepo.startsWith('..') && !isAbsolute(inRepo), `${name} binds ${volume.source}, outside the repository`);
        assert.equal(volume.read_only, true, `${name} binds ${volume.source} writable`);
      }
      for (const port of entry.ports ?? []) assert.equal(port.host_ip, '127.0.0.1', `${name} publishes port ${port.target} beyond this machine`);
    }
  });

  it('the pieces meet: intake, IMDS, token, AEMM config and group names agree across services', function () {
    const worker = environmentOf(service(config, 'worker'));
    const signaler = environmentOf(service(config, 'signaler'));
    const standIn = environmentOf(service(config, 'stand-in'));
    const aemm = service(config, 'aemm');
    const intake = new URL(signaler.SPOT_GUARD_INTAKE_URL ?? '');
    assert.equal(intake.hostname, 'worker');
    assert.equal(Number(intake.port), hostPort(worker.SPOT_GUARD_INTAKE_ADDRESS ?? '')[1], 'the signaler calls the port the intake listens on');
    const imds = new URL(signaler.SPOT_GUARD_IMDS_URL ?? '');
    const aemmArgs = aemm.command ?? [];
    assert.equal(imds.hostname, 'aemm');
    assert.equal(imds.port, aemmArgs[aemmArgs.indexOf('--port') + 1], 'the signaler polls the port AEMM serves');
    assert.ok(aemmArgs.includes('--imdsv2'), 'AEMM requires IMDSv2 session tokens, as a hardened instance does');
    // The token and AEMM's config travel through named volumes: the reader mounts the one the stand-in writes into.
    const volumeHolding = (entry: Service, file: string): Volume | undefined => (entry.volumes ?? []).find((v) => v.type === 'volume' && file.startsWith(`${v.target}/`));
    const tokenWritten = volumeHolding(service(config, 'stand-in'), standIn.TOKEN_FILE ?? '');
    const tokenRead = volumeHolding(service(config, 'signaler'), signaler.SPOT_GUARD_TOKEN_FILE ?? '');
    assert.ok(tokenWritten && tokenRead, 'the token file is on a named volume on both sides');
    assert.equal(tokenRead.source, tokenWritten.source);
    assert.equal(tokenRead.read_only, true, 'the signaler only reads its token');
    const aemmConfig = aemmArgs[aemmArgs.indexOf('--config-file') + 1] ?? '';
    assert.equal(volumeHolding(aemm, aemmConfig)?.source, volumeHolding(service(config, 'stand-in'), standIn.AEMM_CONFIG_FILE ?? '')?.source);
    assert.deepEqual([standIn.SPOT_ASG_NAME, standIn.ON_DEMAND_ASG_NAME], [worker.SPOT_ASG_NAME, worker.ON_DEMAND_ASG_NAME], 'the stand-in creates the groups the worker protects');
    assert.equal(new URL(worker.AWS_ENDPOINT_URL_AUTO_SCALING ?? '').hostname, 'moto');
    assert.equal(hostPort(worker.TEMPORAL_ADDRESS ?? '')[0], 'temporal', 'the worker uses the stack\'s Temporal server, not an embedded one');
  });

  it('the worker\'s configuration validation accepts exactly the environment the compose file gives it, and refuses it without a group', function () {
    const environment = environmentOf(service(config, 'worker'));
    const valid = checkConfig(workerMain, environment);
    assert.equal(valid.status, 0, `the worker refused the compose file's environment:\n${valid.output}`);
    const summary = JSON.parse(valid.output.slice(valid.output.indexOf('{'), valid.output.lastIndexOf('}') + 1)) as Record<string, unknown>;
    assert.equal(summary.temporal, environment.TEMPORAL_ADDRESS);
    assert.equal(summary.intake, environment.SPOT_GUARD_INTAKE_ADDRESS);
    // The check is a real one: the same environment less a required setting is refused (status 2).
    const { SPOT_ASG_NAME: _spot, ...withoutGroup } = environment;
    assert.equal(checkConfig(workerMain, withoutGroup).status, 2);
  });

  it('the signaler\'s configuration validation accepts exactly the environment the compose file gives it', function () {
    const environment = environmentOf(service(config, 'signaler'));
    const valid = checkConfig(signalerMain, environment);
    assert.equal(valid.status, 0, `the signaler refused the compose file's environment:\n${valid.output}`);
    const line = valid.output.split('\n').find((l) => l.includes('"intakeUrl"')) ?? '{}';
    const logged = JSON.parse(line) as { intakeUrl?: string; imdsUrl?: string };
    assert.equal(logged.intakeUrl, environment.SPOT_GUARD_INTAKE_URL);
    assert.equal(logged.imdsUrl, environment.SPOT_GUARD_IMDS_URL);
    const { SPOT_GUARD_INTAKE_ALLOW_HTTP: _allow, ...withoutHttp } = environment;
    assert.equal(checkConfig(signalerMain, withoutHttp).status, 2, 'an http:// intake without the local-test setting is refused');
  });

  it('the worker\'s Kubernetes client takes the kubeconfig the file mounts: plain HTTP to the kwok cluster\'s proxy', async function () {
    const worker = service(config, 'worker');
    const mounted = (worker.volumes ?? []).find((v) => v.target === environmentOf(worker).KUBECONFIG);
    assert.ok(mounted?.source, 'KUBECONFIG names a file the worker mounts');
    const requests: string[] = [];
    const api = createServer((req, res) => {
      requests.push(`${req.method} ${req.url}`);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'ip-probe' } }));
    });
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
    try {
      const server = new URL(readFileSync(mounted.source, 'utf8').match(/server: (\S+)/)?.[1] ?? '');
      assert.equal(`${server.hostname}:${server.port}`, 'kwok:8080', 'the kubeconfig points at the kwok service');
      // The worker's own way to load it (worker/run.ts), with the kwok service's address swapped for a local server.
      const kubeConfig = new KubeConfig();
      kubeConfig.loadFromString(readFileSync(mounted.source, 'utf8').replace(server.origin, `http://127.0.0.1:${(api.address() as AddressInfo).port}`));
      reuseConnections(kubeConfig);
      const node = await kubeConfig.makeApiClient(CoreV1Api).readNode({ name: 'ip-probe' });
      assert.equal(node.metadata?.name, 'ip-probe');
      assert.deepEqual(requests, ['GET /api/v1/nodes/ip-probe']);
    } finally {
      await new Promise((resolve) => api.close(resolve));
    }
  });
});
