// A real Kubernetes control plane on 127.0.0.1 for integration tests: etcd, kube-apiserver, kube-controller-manager
// (disruption controller and friends, so PodDisruptionBudget status is real), optionally kube-scheduler and the
// workload controllers (`workloads`), and kwok (node heartbeats, pods that run and terminate on nodes annotated
// kwok.x-k8s.io/node=fake). Binaries come from the peers cache.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, KubeConfig, PolicyV1Api } from '@kubernetes/client-node';
import { reuseConnections } from '../../worker/kubernetes-connections.js';
import { freePort } from './wait.js';
import { stopOnExit } from './stop-on-exit.js';
import { etcdPath, kubeApiserverPath, kubeControllerManagerPath, kubeSchedulerPath, kwokPath } from './peers.js';
import { samplesOf } from './prometheus.js';

/** kwok's nodes report status as kubelets with leases do (see the file). */
const kwokNodeStages = fileURLToPath(new URL('../../../scripts/peers/kwok-node-stages.yaml', import.meta.url));

export const KWOK_ANNOTATION = 'kwok.x-k8s.io/node';

interface Running {
  name: string;
  child: ChildProcess;
  log: string[];
}

export interface KubernetesStackOptions {
  /**
   * kwok renews every node's lease at a quarter of this, as a kubelet does (40 s: 1,000 nodes write 100 leases a
   * second). The benchmark can lengthen it, so a simulated cluster's upkeep does not take the worker's CPU on a
   * machine where, in production, the control plane would run elsewhere. The node lifecycle controller waits twice
   * as long before it calls a silent node NotReady.
   */
  nodeLeaseSeconds?: number;
  /**
   * Also run kube-scheduler and the workload controllers (Deployments, ReplicaSets, DaemonSets, and the garbage
   * collector for the pods they own), so applied manifests get real pods bound to nodes, as in a cluster. Off by
   * default: most tests bind their pods themselves, naming owners that do not exist.
   */
  workloads?: boolean;
}

export class KubernetesStack {
  private readonly nodeLeaseSeconds: number;
  private readonly workloads: boolean;

  constructor(options: KubernetesStackOptions = {}) {
    this.nodeLeaseSeconds = options.nodeLeaseSeconds ?? 40;
    this.workloads = options.workloads ?? false;
  }

  readonly dir = mkdtempSync(join(tmpdir(), 'spot-guard-k8s-'));
  kubeconfigPath = '';
  server = '';
  private readonly processes: Running[] = [];
  private apiserverArgs: string[] = [];

  async start(): Promise<this> {
    try {
      this.makeCertificates();
      const [etcdClient, etcdPeer, apiPort] = [await freePort(), await freePort(), await freePort()];
      this.run('etcd', etcdPath(), [
        '--name', 'default',
        '--data-dir', join(this.dir, 'etcd'),
        '--listen-client-urls', `http://127.0.0.1:${etcdClient}`,
        '--advertise-client-urls', `http://127.0.0.1:${etcdClient}`,
        '--listen-peer-urls', `http://127.0.0.1:${etcdPeer}`,
        '--initial-advertise-peer-urls', `http://127.0.0.1:${etcdPeer}`,
        '--initial-cluster', `default=http://127.0.0.1:${etcdPeer}`,
        '--unsafe-no-fsync',
        '--log-level', 'error',
      ]);
      this.server = `https://127.0.0.1:${apiPort}`;
      this.apiserverArgs = [
        '--etcd-servers', `http://127.0.0.1:${etcdClient}`,
        '--bind-address', '127.0.0.1',
        '--advertise-address', '127.0.0.1',
        '--secure-port', String(apiPort),
        '--tls-cert-file', this.file('apiserver.crt'),
        '--tls-private-key-file', this.file('apiserver.key'),
        '--client-ca-file', this.file('ca.crt'),
        '--service-account-key-file', this.file('sa.pub'),
        '--service-account-signing-key-file', this.file('sa.key'),
        '--service-account-issuer', 'https://kubernetes.default.svc.cluster.local',
        '--service-cluster-ip-range', '10.96.0.0/16',
        '--authorization-mode', 'Node,RBAC',
        // Pods in tests need no service account token; everything else stays as in a real cluster.
        '--disable-admission-plugins', 'ServiceAccount',
        '--v', '0',
      ];
      this.run('kube-apiserver', kubeApiserverPath(), this.apiserverArgs);
      this.writeKubeconfig();
      await this.waitReady(90_000);
      this.startControllers();
      this.run('kwok', kwokPath(), [
        '--kubeconfig', this.kubeconfigPath,
        '--manage-nodes-with-annotation-selector', `${KWOK_ANNOTATION}=fake`,
        '--node-lease-duration-seconds', String(this.nodeLeaseSeconds),
        '--config', kwokNodeStages,
        '--server-address', `127.0.0.1:${await freePort()}`,
      ]);
      return this;
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  /** kube-controller-manager, and with `workloads` kube-scheduler: they talk to the API server as the admin. */
  private startControllers(): void {
    this.run('kube-controller-manager', kubeControllerManagerPath(), [
      '--kubeconfig', this.kubeconfigPath,
      // No garbage collector: test pods name DaemonSet and ReplicaSet owners that do not exist. No scheduler either:
      // test pods are bound to their nodes. Both with `workloads`, for tests that apply real manifests.
      '--controllers', `disruption,namespace,podgc,nodelifecycle${this.workloads ? ',daemonset,deployment,replicaset,garbagecollector' : ''}`,
      '--node-monitor-grace-period', `${Math.max(50, 2 * this.nodeLeaseSeconds)}s`,
      '--leader-elect=false',
      '--use-service-account-credentials=false',
      '--root-ca-file', this.file('ca.crt'),
      '--service-account-private-key-file', this.file('sa.key'),
      '--bind-address', '127.0.0.1',
      '--secure-port', '0',
      '--v', '0',
    ]);
    if (this.workloads) {
      this.run('kube-scheduler', kubeSchedulerPath(), [
        '--kubeconfig', this.kubeconfigPath,
        '--leader-elect=false',
        '--bind-address', '127.0.0.1',
        '--secure-port', '0',
        '--v', '0',
      ]);
    }
  }

  /** Takes the API server away (an outage), keeping etcd and the other processes. */
  async stopApiserver(): Promise<void> {
    const running = this.processes.find((p) => p.name === 'kube-apiserver' && p.child.exitCode === null);
    if (!running) return;
    await new Promise<void>((resolve) => {
      running.child.once('exit', () => resolve());
      running.child.kill('SIGKILL');
    });
    this.processes.splice(this.processes.indexOf(running), 1);
  }

  /** Brings the API server back on the same address, with the same data. */
  async startApiserver(): Promise<void> {
    this.run('kube-apiserver', kubeApiserverPath(), this.apiserverArgs);
    await this.waitReady(90_000);
  }

  async stop(): Promise<void> {
    await Promise.all(
      [...this.processes].reverse().map(
        ({ child }) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGTERM');
            setTimeout(() => child.kill('SIGKILL'), 5000).unref();
          }),
      ),
    );
    rmSync(this.dir, { recursive: true, force: true });
  }

  kubeConfig(): KubeConfig {
    const config = new KubeConfig();
    config.loadFromFile(this.kubeconfigPath);
    reuseConnections(config);
    return config;
  }

  coreApi(): CoreV1Api {
    return this.kubeConfig().makeApiClient(CoreV1Api);
  }

  /** A kubeconfig that acts as a service account (a fresh token from the TokenRequest API), for checking its rights. */
  async kubeConfigAs(namespace: string, name: string): Promise<KubeConfig> {
    const { status } = await this.coreApi().createNamespacedServiceAccountToken({ namespace, name, body: { spec: { audiences: [] } } });
    const cluster = this.kubeConfig().getCurrentCluster();
    if (!status?.token || !cluster) throw new Error(`no token for the service account ${namespace}/${name}`);
    const config = new KubeConfig();
    config.loadFromOptions({ clusters: [cluster], users: [{ name, token: status.token }], contexts: [{ name, cluster: cluster.name, user: name }], currentContext: name });
    return config;
  }

  policyApi(): PolicyV1Api {
    return this.kubeConfig().makeApiClient(PolicyV1Api);
  }

  /** The last lines each process wrote, for a failing test's message. */
  logs(): string {
    return this.processes.map((p) => `--- ${p.name}\n${p.log.slice(-15).join('')}`).join('\n');
  }

  private file(name: string): string {
    return join(this.dir, name);
  }

  private run(name: string, path: string, args: string[]): void {
    const child = spawn(path, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    // Interrupted: every process of the stack killed, and its directory (certificates, etcd's data) removed.
    stopOnExit(child, () => rmSync(this.dir, { recursive: true, force: true }));
    const running: Running = { name, child, log: [] };
    const keep = (chunk: Buffer) => {
      running.log.push(chunk.toString());
      if (running.log.length > 200) running.log.splice(0, 100);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.processes.push(running);
  }

  private openssl(...args: string[]): void {
    execFileSync('openssl', args, { cwd: this.dir, stdio: 'pipe' });
  }

  private makeCertificates(): void {
    this.openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=spot-guard-test-ca');
    const issue = (name: string, subject: string, extensions: string) => {
      this.openssl('req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject);
      writeFileSync(this.file(`${name}.ext`), extensions);
      this.openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
    };
    issue('apiserver', '/CN=kube-apiserver', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
    issue('admin', '/O=system:masters/CN=spot-guard-test-admin', 'extendedKeyUsage=clientAuth\n');
    this.openssl('genrsa', '-out', 'sa.key', '2048');
    this.openssl('rsa', '-in', 'sa.key', '-pubout', '-out', 'sa.pub');
  }

  private writeKubeconfig(): void {
    const b64 = (name: string) => readFileSync(this.file(name)).toString('base64');
    this.kubeconfigPath = this.file('kubeconfig');
    writeFileSync(
      this.kubeconfigPath,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'test', cluster: { server: this.server, 'certificate-authority-data': b64('ca.crt') } }],
        users: [{ name: 'admin', user: { 'client-certificate-data': b64('admin.crt'), 'client-key-data': b64('admin.key') } }],
        contexts: [{ name: 'test', context: { cluster: 'test', user: 'admin' } }],
        'current-context': 'test',
      }),
    );
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const dead = this.processes.find((p) => p.child.exitCode !== null);
      if (dead) throw new Error(`${dead.name} exited with ${dead.child.exitCode}:\n${this.logs()}`);
      if ((await this.readyz()) === 200) return;
      if (Date.now() > deadline) throw new Error(`kube-apiserver not ready after ${timeoutMs / 1000} s:\n${this.logs()}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  private async readyz(): Promise<number> {
    return (await this.get('/readyz', 2000)).status;
  }

  /**
   * Requests the API server has served so far, by verb and resource ("PATCH nodes", "LIST pods", "POST
   * pods/eviction"), from its own metrics: which clients' calls a run's API server CPU went to.
   */
  async requestCounts(): Promise<Record<string, number>> {
    const { status, body } = await this.get('/metrics', 10_000);
    if (status !== 200) throw new Error(`kube-apiserver /metrics answered ${status}`);
    const counts: Record<string, number> = {};
    for (const { labels, value } of samplesOf(body, 'apiserver_request_total')) {
      const key = `${labels.verb} ${labels.resource}${labels.subresource ? `/${labels.subresource}` : ''}`;
      counts[key] = (counts[key] ?? 0) + value;
    }
    return counts;
  }

  private get(path: string, timeoutMs: number): Promise<{ status: number; body: string }> {
    return new Promise((resolve) => {
      const req = request(`${this.server}${path}`, {
        ca: readFileSync(this.file('ca.crt')),
        cert: readFileSync(this.file('admin.crt')),
        key: readFileSync(this.file('admin.key')),
        timeout: timeoutMs,
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        res.on('error', () => resolve({ status: 0, body: '' }));
      });
      req.on('error', () => resolve({ status: 0, body: '' }));
      req.on('timeout', () => req.destroy());
      req.end();
    });
  }
}
