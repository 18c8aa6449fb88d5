// A small fake of the Kubernetes API server over HTTP on 127.0.0.1, for unit and workflow tests. The real
// @kubernetes/client-node talks to it, so request shapes (paths, content types, bodies) are the ones the real client
// sends. It records every request and can refuse evictions as a PodDisruptionBudget would.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CoreV1Api, KubeConfig, PolicyV1Api, type V1Node, type V1Pod, type V1PodDisruptionBudget, type V1Taint } from '@kubernetes/client-node';

export interface RecordedRequest {
  method: string;
  path: string;
  contentType?: string;
  body?: unknown;
}

export interface FakeNodeOptions {
  name: string;
  instanceId: string;
  zone?: string;
  ready?: boolean;
  taints?: V1Taint[];
  allocatable?: { cpu: string; memory: string };
}

export interface FakePodOptions {
  namespace?: string;
  name: string;
  nodeName: string;
  ownerKind?: string;
  /** Pods of the same owner share this uid (default: one owner per pod). */
  ownerUid?: string;
  mirror?: boolean;
  phase?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  requests?: { cpu?: string; memory?: string };
  /** Names of emptyDir volumes (kubectl drain's "local storage"). Without `ownerKind` a pod is bare: no controller. */
  emptyDirs?: string[];
}

export class FakeKubernetesApi {
  readonly nodes = new Map<string, V1Node>();
  readonly pods = new Map<string, V1Pod>();
  readonly requests: RecordedRequest[] = [];
  readonly budgets: V1PodDisruptionBudget[] = [];
  /** When set, an evicted pod with a controller comes back on this node, Running and Ready, as a scheduler would do. */
  rescheduleEvictedTo?: string;
  /** When set, evicted pods with a controller come back Pending and unscheduled (nowhere they fit). */
  evictedPodsStayPending = false;
  /**
   * When set, a scheduler of the test's own: an evicted pod with a controller comes back Running and Ready on the node
   * this returns, or Pending and unscheduled when it returns undefined. Takes precedence over the two settings above.
   */
  placeEvicted?: (pod: V1Pod) => string | undefined;
  private replacements = 0;
  /** Pod key → how many more evictions to refuse with 429. */
  readonly pdbBlocks = new Map<string, number>();
  /** The next N patches that carry a resourceVersion find the node changed (onConflict runs) and answer 409. */
  conflictsBeforePatch = 0;
  onConflict: (node: V1Node) => void = () => undefined;
  /** Pods evicted get a deletionTimestamp and are removed on the next list, like a fast kubelet. */
  private readonly terminating = new Set<string>();
  private resourceVersion = 100;
  private server?: Server;
  url = '';

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => this.send(res, 500, status(500, String(error))));
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }

  /** A real CoreV1Api pointed at this fake. */
  coreApi(): CoreV1Api {
    return this.kubeConfig().makeApiClient(CoreV1Api);
  }

  /** A real PolicyV1Api pointed at this fake. */
  policyApi(): PolicyV1Api {
    return this.kubeConfig().makeApiClient(PolicyV1Api);
  }

  private kubeConfig(): KubeConfig {
    const config = new KubeConfig();
    config.loadFromOptions({
      clusters: [{ name: 'fake', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'fake' }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'fake' }],
      currentContext: 'fake',
    });
    return config;
  }

  addNode(options: FakeNodeOptions): V1Node {
    const node: V1Node = {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: options.name, resourceVersion: this.nextVersion(), labels: {} },
      spec: { providerID: `aws:///${options.zone ?? 'us-east-1a'}/${options.instanceId}`, taints: options.taints },
      status: {
        conditions: [{ type: 'Ready', status: options.ready === false ? 'False' : 'True' }],
        allocatable: options.allocatable ?? { cpu: '4', memory: '16Gi' },
      },
    };
    this.nodes.set(options.name, node);
    return node;
  }

  setNodeReady(name: string, ready: boolean): void {
    const node = this.nodes.get(name);
    if (!node) throw new Error(`no node ${name}`);
    node.status = { ...node.status, conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] };
  }

  addPod(pod: FakePodOptions): V1Pod {
    const namespace = pod.namespace ?? 'default';
    const created: V1Pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: pod.name,
        namespace,
        labels: pod.labels ?? {},
        annotations: { ...(pod.mirror ? { 'kubernetes.io/config.mirror': 'abc' } : {}), ...pod.annotations },
        ownerReferences: pod.ownerKind
          ? [{ apiVersion: 'apps/v1', kind: pod.ownerKind, name: `${pod.name}-owner`, uid: pod.ownerUid ?? `uid-${namespace}-${pod.name}`, controller: true }]
          : [],
      },
      spec: {
        nodeName: pod.nodeName,
        containers: [{ name: 'main', image: 'busybox', resources: pod.requests ? { requests: pod.requests } : undefined }],
        volumes: pod.emptyDirs?.map((name) => ({ name, emptyDir: {} })),
      },
      status: {
        phase: pod.phase ?? 'Running',
        conditions: [{ type: 'Ready', status: (pod.phase ?? 'Running') === 'Running' ? 'True' : 'False' }],
      },
    };
    this.pods.set(`${namespace}/${pod.name}`, created);
    return created;
  }

  /** A PodDisruptionBudget with its status as the disruption controller would have computed it. */
  addBudget(budget: { namespace?: string; name: string; matchLabels: Record<string, string>; disruptionsAllowed: number }): void {
    this.budgets.push({
      apiVersion: 'policy/v1',
      kind: 'PodDisruptionBudget',
      metadata: { name: budget.name, namespace: budget.namespace ?? 'default', generation: 1 },
      spec: { selector: { matchLabels: budget.matchLabels }, minAvailable: 1 },
      status: { observedGeneration: 1, disruptionsAllowed: budget.disruptionsAllowed, currentHealthy: 1, desiredHealthy: 1, expectedPods: 1 },
    });
  }

  podsOn(nodeName: string): string[] {
    return [...this.pods.entries()].filter(([, p]) => p.spec?.nodeName === nodeName).map(([key]) => key);
  }

  requestsMatching(method: string, pathPart: string): RecordedRequest[] {
    return this.requests.filter((r) => r.method === method && r.path.includes(pathPart));
  }

  private nextVersion(): string {
    return String(++this.resourceVersion);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const raw = await readBody(req);
    const body = raw ? (JSON.parse(raw) as unknown) : undefined;
    this.requests.push({ method: req.method ?? '', path: url.pathname + url.search, contentType: req.headers['content-type'], body });

    let match: RegExpExecArray | null;
    if (req.method === 'GET' && url.pathname === '/api/v1/nodes') {
      return this.send(res, 200, { apiVersion: 'v1', kind: 'NodeList', metadata: {}, items: [...this.nodes.values()] });
    }
    if ((match = /^\/api\/v1\/nodes\/([^/]+)$/.exec(url.pathname))) {
      const node = this.nodes.get(decodeURIComponent(match[1]));
      if (!node) return this.send(res, 404, status(404, `nodes "${match[1]}" not found`, 'NotFound'));
      if (req.method === 'GET') return this.send(res, 200, node);
      if (req.method === 'PATCH') return this.patchNode(res, node, req.headers['content-type'], body);
    }
    if (req.method === 'GET' && url.pathname === '/api/v1/pods') {
      const selector = url.searchParams.get('fieldSelector') ?? '';
      const nodeName = /spec\.nodeName=([^,]+)/.exec(selector)?.[1];
      for (const key of this.terminating) this.terminated(key); // terminated since the last look
      this.terminating.clear();
      const items = [...this.pods.values()].filter((p) => nodeName === undefined || p.spec?.nodeName === nodeName);
      return this.send(res, 200, { apiVersion: 'v1', kind: 'PodList', metadata: {}, items });
    }
    if (req.method === 'GET' && url.pathname === '/apis/policy/v1/poddisruptionbudgets') {
      return this.send(res, 200, { apiVersion: 'policy/v1', kind: 'PodDisruptionBudgetList', metadata: {}, items: this.budgets });
    }
    if (req.method === 'POST' && (match = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/eviction$/.exec(url.pathname))) {
      const key = `${match[1]}/${match[2]}`;
      const pod = this.pods.get(key);
      if (!pod) return this.send(res, 404, status(404, `pods "${match[2]}" not found`, 'NotFound'));
      const blocks = this.pdbBlocks.get(key) ?? 0;
      if (blocks > 0) {
        this.pdbBlocks.set(key, blocks - 1);
        return this.send(res, 429, status(429, 'Cannot evict pod as it would violate the pod\'s disruption budget.', 'TooManyRequests'));
      }
      pod.metadata = { ...pod.metadata, deletionTimestamp: new Date() };
      this.terminating.add(key);
      return this.send(res, 201, { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name: match[2], namespace: match[1] } });
    }
    return this.send(res, 404, status(404, `fake has no route for ${req.method} ${url.pathname}`, 'NotFound'));
  }

  private terminated(key: string): void {
    const pod = this.pods.get(key);
    this.pods.delete(key);
    const owner = pod?.metadata?.ownerReferences?.find((o) => o.controller);
    if (!pod || !owner || owner.kind === 'DaemonSet') return;
    if (this.rescheduleEvictedTo === undefined && !this.evictedPodsStayPending && !this.placeEvicted) return;
    const name = `${pod.metadata?.name}-r${++this.replacements}`;
    const placed = this.placeEvicted ? this.placeEvicted(pod) : this.rescheduleEvictedTo;
    const pending = this.placeEvicted ? placed === undefined : this.evictedPodsStayPending;
    this.pods.set(`${pod.metadata?.namespace}/${name}`, {
      ...pod,
      metadata: { ...pod.metadata, name, deletionTimestamp: undefined },
      spec: { containers: [], ...pod.spec, nodeName: pending ? undefined : placed },
      status: pending
        ? { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False' }] }
        : { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] },
    });
  }

  /** Strategic merge for the fields Spot Guard patches: spec.taints (no merge key: replaced) and spec.unschedulable. */
  private patchNode(res: ServerResponse, node: V1Node, contentType: string | undefined, body: unknown): void {
    if (contentType !== 'application/strategic-merge-patch+json') {
      return this.send(res, 415, status(415, `fake expects a strategic merge patch, got ${contentType}`, 'UnsupportedMediaType'));
    }
    const patch = body as { metadata?: { resourceVersion?: string }; spec?: { taints?: V1Taint[]; unschedulable?: boolean } };
    const expected = patch.metadata?.resourceVersion;
    if (expected !== undefined && this.conflictsBeforePatch > 0) {
      this.conflictsBeforePatch--;
      this.onConflict(node);
      node.metadata = { ...node.metadata, resourceVersion: this.nextVersion() };
    }
    if (expected !== undefined && expected !== node.metadata?.resourceVersion) {
      return this.send(res, 409, status(409, 'the object has been modified; please apply your changes to the latest version', 'Conflict'));
    }
    if (patch.spec?.taints !== undefined) node.spec = { ...node.spec, taints: patch.spec.taints };
    if (patch.spec?.unschedulable !== undefined) node.spec = { ...node.spec, unschedulable: patch.spec.unschedulable };
    node.metadata = { ...node.metadata, resourceVersion: this.nextVersion() };
    return this.send(res, 200, node);
  }

  private send(res: ServerResponse, code: number, payload: unknown): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(payload));
  }
}

function status(code: number, message: string, reason = 'InternalError') {
  return { apiVersion: 'v1', kind: 'Status', status: 'Failure', message, reason, code };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
