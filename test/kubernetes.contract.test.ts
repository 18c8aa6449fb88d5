// Contract tests: the Kubernetes activities against a real kube-apiserver (with etcd, the disruption controller and
// kwok) over HTTPS, with the real @kubernetes/client-node.
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CoreV1Api,
  KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  loadAllYaml,
  PatchStrategy,
  PolicyV1Api,
  setHeaderOptions,
  type V1Pod,
} from '@kubernetes/client-node';
import { kubernetesStatus } from '../activities/errors.js';
import { createKubernetesActivities } from '../activities/kubernetes.js';
import { createScaleDownSafetyActivities } from '../activities/scale-down-safety.js';
import type { DrainReport } from '../workflows/shared/activity-types.js';
import { watchNodes } from '../activities/node-watch.js';
import { reuseConnections } from '../worker/kubernetes-connections.js';
import { KubernetesStack, KWOK_ANNOTATION } from '../scripts/peers/kubernetes-stack.js';
import { activityEnvironment } from './helpers/temporal.js';
import { until as waitUntil } from '../scripts/peers/wait.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const TAINT = { key: 'spot-instance-terminating', value: 'true', effect: 'NoSchedule' as const };

describe('Kubernetes activities against a real API server (contract)', function () {
  this.timeout(120_000);
  let stack: KubernetesStack;
  let core: CoreV1Api;
  let policy: PolicyV1Api;
  let activities: ReturnType<typeof createKubernetesActivities>;
  let safety: ReturnType<typeof createScaleDownSafetyActivities>;
  let counter = 0;
  const run = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> => activityEnvironment().run(fn, ...args);

  before(async function () {
    stack = await new KubernetesStack().start();
    core = stack.coreApi();
    policy = stack.policyApi();
    activities = createKubernetesActivities(core, { evictionRetrySeconds: 0.5, firstHeartbeatAfterSeconds: 0 });
    safety = createScaleDownSafetyActivities(core, policy, { pollSeconds: 0.5 });
  });
  after(async () => stack?.stop());
  // Timeouts here show the control plane's last log lines.
  const until = (what: string, predicate: () => Promise<boolean>, timeoutMs = 60_000) => waitUntil(what, predicate, timeoutMs, () => stack.logs());

  /** A kwok-managed node whose providerID names the instance; it turns Ready by kwok's heartbeat. */
  async function node(instanceId = `i-0a${String(++counter).padStart(15, '0')}`): Promise<{ name: string; instanceId: string }> {
    const name = `node-${++counter}`;
    await core.createNode({
      body: {
        metadata: { name, annotations: { [KWOK_ANNOTATION]: 'fake' } },
        spec: { providerID: `aws:///us-east-1a/${instanceId}`, taints: [{ key: 'dedicated', value: 'batch', effect: 'NoSchedule' }] },
        status: { allocatable: { cpu: '4', memory: '16Gi', pods: '110' }, capacity: { cpu: '4', memory: '16Gi', pods: '110' } },
      },
    });
    await until(`node ${name} Ready`, async () => (await run(activities.findNodeForInstance, { instanceId })).ready);
    return { name, instanceId };
  }

  async function pod(nodeName: string, name: string, extra: { labels?: Record<string, string>; owner?: string; mirror?: boolean } = {}): Promise<V1Pod> {
    const created = await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: {
          name,
          labels: extra.labels,
          annotations: extra.mirror ? { 'kubernetes.io/config.mirror': 'static' } : undefined,
          ownerReferences: extra.owner
            ? [{ apiVersion: 'apps/v1', kind: extra.owner, name: `${name}-owner`, uid: `00000000-0000-0000-0000-${String(++counter).padStart(12, '0')}`, controller: true }]
            : undefined,
        },
        spec: {
          nodeName,
          tolerations: [{ operator: 'Exists' }],
          terminationGracePeriodSeconds: 0,
          containers: [{ name: 'main', image: 'registry.invalid/app:1', resources: { requests: { cpu: '100m', memory: '64Mi' } } }],
        },
      },
    });
    await until(`pod ${name} Running`, async () => (await core.readNamespacedPod({ namespace: 'default', name })).status?.phase === 'Running');
    return created;
  }

  it('the worker\'s client keeps one TLS connection for many requests, where client-node alone opens one per request', async function () {
    /** Connections undici opened while `requests` calls ran one after another. */
    async function connectionsFor(config: KubeConfig, requests: number): Promise<number> {
      let opened = 0;
      const count = (): void => {
        opened++;
      };
      subscribe('undici:client:connected', count);
      try {
        const api = config.makeApiClient(CoreV1Api);
        for (let i = 0; i < requests; i++) await api.listNamespace();
      } finally {
        unsubscribe('undici:client:connected', count);
      }
      return opened;
    }
    const plain = new KubeConfig();
    plain.loadFromFile(stack.kubeconfigPath);
    assert.equal(await connectionsFor(plain, 10), 10, 'client-node 2.x is expected to connect anew for every request');
    const pooled = new KubeConfig();
    pooled.loadFromFile(stack.kubeconfigPath);
    const reuse = reuseConnections(pooled);
    assert.equal(await connectionsFor(pooled, 10), 1);
    assert.equal(reuse.dispatchersCreated, 1);
  });

  it('the node watch follows nodes as they come, turn Ready, change and go, and the node lookups use it instead of lists', async function () {
    const problems: string[] = [];
    const watch = watchNodes(stack.kubeConfig(), core, { onProblem: (message) => problems.push(message) });
    try {
      let lists = 0;
      const counting = {
        readNode: core.readNode.bind(core),
        patchNode: core.patchNode.bind(core),
        listPodForAllNamespaces: core.listPodForAllNamespaces.bind(core),
        createNamespacedPodEviction: core.createNamespacedPodEviction.bind(core),
        listNode: (...args: Parameters<CoreV1Api['listNode']>) => {
          lists++;
          return core.listNode(...args);
        },
      };
      const watched = createKubernetesActivities(counting, { nodeWatch: watch });
      assert.equal(watch.current(), undefined, 'not in sync before its first list is in');
      await until('node watch in sync', async () => watch.current() !== undefined, 10_000);

      // A node that registers before its providerID is set (a cloud controller sets it) joins its instance then.
      const instanceId = `i-0b${String(++counter).padStart(15, '0')}`;
      const name = `node-${++counter}`;
      lists = 0;
      await core.createNode({
        body: {
          metadata: { name, annotations: { [KWOK_ANNOTATION]: 'fake' } },
          status: { allocatable: { cpu: '4', memory: '16Gi', pods: '110' }, capacity: { cpu: '4', memory: '16Gi', pods: '110' } },
        },
      });
      assert.equal(await run(watched.findNodeForInstance, { instanceId }).then((look) => look.nodeName), undefined);
      await core.patchNode({ name, body: { spec: { providerID: `aws:///us-east-1a/${instanceId}` } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
      const ready = await run(watched.awaitNodeReady, { instanceId, deadline: new Date(Date.now() + 30_000).toISOString() });
      assert.deepEqual(ready, { nodeName: name, ready: true });
      assert.equal(lists, 0, 'answered from the watch, without listing nodes');

      await core.deleteNode({ name });
      await until(`node ${name} gone from the watch`, async () => (await run(watched.findNodeForInstance, { instanceId })).nodeName === undefined, 10_000);
      assert.equal(lists, 0);
      assert.deepEqual(problems, []);
    } finally {
      await watch.stop();
    }
  });

  it('a node watch that cannot reach the API server says so and leaves the lookups to lists', async function () {
    const unreachable = new KubeConfig();
    unreachable.loadFromOptions({
      clusters: [{ name: 'nowhere', server: 'https://127.0.0.1:9', skipTLSVerify: true }],
      users: [{ name: 'nobody' }],
      contexts: [{ name: 'nowhere', cluster: 'nowhere', user: 'nobody' }],
      currentContext: 'nowhere',
    });
    const problems: string[] = [];
    const nowhere = unreachable.makeApiClient(CoreV1Api);
    const watch = watchNodes(unreachable, nowhere, { restartDelayMs: 200, onProblem: (message) => problems.push(message) });
    try {
      const { name, instanceId } = await node();
      const fallingBack = createKubernetesActivities(core, { nodeWatch: watch });
      assert.deepEqual(await run(fallingBack.findNodeForInstance, { instanceId }), { nodeName: name, ready: true });
      await until('the watch reports its failures', async () => problems.length >= 2, 10_000);
      assert.match(problems[0] ?? '', /node watch failed, reading nodes directly until it is back: /);
      assert.equal(watch.current(), undefined);
    } finally {
      await watch.stop();
    }
  });

  it('the taint patch is accepted by the real API server and merged by key with the node\'s other taints', async function () {
    const { name } = await node();
    assert.deepEqual(await run(activities.taintNode, { nodeName: name, taint: TAINT }), { alreadyTainted: false });
    assert.deepEqual(await run(activities.taintNode, { nodeName: name, taint: TAINT }), { alreadyTainted: true });
    const taints = (await core.readNode({ name })).spec?.taints
      ?.filter((t) => !t.key.startsWith('node.kubernetes.io/')) // the cluster's own condition taints
      .map((t) => `${t.key}=${t.value}:${t.effect}`);
    assert.deepEqual(taints, ['dedicated=batch:NoSchedule', 'spot-instance-terminating=true:NoSchedule']);
    await run(activities.cordonNode, { nodeName: name });
    assert.equal((await core.readNode({ name })).spec?.unschedulable, true);
    await run(activities.releaseNode, { nodeName: name, taintKey: TAINT.key });
    const released = await core.readNode({ name });
    assert.deepEqual(released.spec?.taints?.map((t) => t.key).filter((k) => !k.startsWith('node.kubernetes.io/')), ['dedicated']);
    assert.notEqual(released.spec?.unschedulable, true);
  });

  it('finds nodes by providerID and refuses a node that names another instance', async function () {
    const { name, instanceId } = await node();
    assert.deepEqual(await run(activities.findNodeForInstance, { instanceId }), { nodeName: name, ready: true });
    assert.deepEqual(await run(activities.verifyNode, { nodeName: name, instanceId }), { providerID: `aws:///us-east-1a/${instanceId}` });
    await assert.rejects(run(activities.verifyNode, { nodeName: name, instanceId: 'i-0fffffffffffffff0' }), /names instance .*, not i-0fffffffffffffff0/);
  });

  it('drains through the Eviction API, skipping DaemonSet and mirror pods', async function () {
    const { name } = await node();
    await pod(name, `web-${counter}`, { owner: 'ReplicaSet' });
    await pod(name, `cni-${counter}`, { owner: 'DaemonSet' });
    await pod(name, `static-${counter}`, { mirror: true });
    const report = await run(activities.evictPods, { nodeName: name, deadline: new Date(Date.now() + 60_000).toISOString() });
    assert.equal(report.complete, true, JSON.stringify(report));
    assert.equal(report.evicted.length, 1);
    assert.match(report.evicted[0], /^default\/web-/);
    assert.deepEqual(report.skipped.map((s) => s.replace(/-\d+ /, ' ')).sort(), ['default/cni (DaemonSet pod)', 'default/static (mirror pod)']);
    const left = await core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${name}` });
    assert.deepEqual(left.items.map((p) => p.metadata?.name?.replace(/-\d+$/, '')).sort(), ['cni', 'static']);
  });

  it('an eviction blocked by a real PodDisruptionBudget (429) is retried until the budget allows it', async function () {
    const a = await node();
    const b = await node();
    const app = `db-${counter}`;
    await pod(a.name, `${app}-0`, { labels: { app }, owner: 'StatefulSet' });
    await pod(b.name, `${app}-1`, { labels: { app }, owner: 'StatefulSet' });
    await policy.createNamespacedPodDisruptionBudget({
      namespace: 'default',
      body: { metadata: { name: `${app}-pdb` }, spec: { minAvailable: 2, selector: { matchLabels: { app } } } },
    });
    await until('the disruption controller to compute the budget', async () => {
      const budget = await policy.readNamespacedPodDisruptionBudget({ namespace: 'default', name: `${app}-pdb` });
      return budget.status?.observedGeneration === budget.metadata?.generation && budget.status?.currentHealthy === 2;
    });
    const verdict = await run(safety.assessScaleDownSafety, { nodeName: a.name, bufferPercent: 10 });
    assert.equal(verdict.safe, false);
    assert.match(verdict.reason, new RegExp(`PodDisruptionBudget default/${app}-pdb allows 0 disruption\\(s\\) but 1 of its pods are on node ${a.name}`));

    const heartbeats: { blocked?: string[] }[] = [];
    const env = activityEnvironment();
    env.on('heartbeat', (details: { blocked?: string[] }) => heartbeats.push(details));
    const draining: Promise<DrainReport> = env.run(activities.evictPods, { nodeName: a.name, deadline: new Date(Date.now() + 60_000).toISOString() });
    await until('the eviction to be refused', async () => heartbeats.some((h) => h.blocked?.includes(`default/${app}-0`)));
    await pod(b.name, `${app}-2`, { labels: { app }, owner: 'StatefulSet' }); // a third healthy pod: one disruption allowed now
    const report = await draining;
    assert.equal(report.complete, true);
    assert.deepEqual(report.evicted, [`default/${app}-0`]);
  });

  it('a PodDisruptionBudget status that allows the disruption makes the node safe to empty', async function () {
    const a = await node();
    const b = await node();
    const app = `api-${counter}`;
    await pod(a.name, `${app}-0`, { labels: { app }, owner: 'ReplicaSet' });
    await pod(b.name, `${app}-1`, { labels: { app }, owner: 'ReplicaSet' });
    await policy.createNamespacedPodDisruptionBudget({
      namespace: 'default',
      body: { metadata: { name: `${app}-pdb` }, spec: { minAvailable: 1, selector: { matchLabels: { app } } } },
    });
    await until('the budget to allow a disruption', async () => {
      const budget = await policy.readNamespacedPodDisruptionBudget({ namespace: 'default', name: `${app}-pdb` });
      return budget.status?.observedGeneration === budget.metadata?.generation && budget.status?.disruptionsAllowed === 1;
    });
    // Room: node b and the other test nodes have NoSchedule taints ("dedicated"), so the check finds none.
    const verdict = await run(safety.assessScaleDownSafety, { nodeName: a.name, bufferPercent: 10 });
    assert.match(verdict.reason, /^not enough room|can move/);
    assert.doesNotMatch(verdict.reason, /PodDisruptionBudget/);
  });

  it('as the service account of deploy/base/rbac.yaml, the worker\'s Kubernetes steps all work and anything beyond is refused', async function () {
    const objects = loadAllYaml(readFileSync(join(repoRoot, 'deploy', 'base', 'rbac.yaml'), 'utf8')) as KubernetesObject[];
    const admin = KubernetesObjectApi.makeApiClient(stack.kubeConfig());
    for (const object of objects) await admin.create(object);
    const asWorker = await stack.kubeConfigAs('spot-guard', 'spot-guard-worker');
    const workerCore = asWorker.makeApiClient(CoreV1Api);
    const steps = createKubernetesActivities(workerCore, { evictionRetrySeconds: 0.5 });
    const workerSafety = createScaleDownSafetyActivities(workerCore, asWorker.makeApiClient(PolicyV1Api), { pollSeconds: 0.5 });

    const warned = await node();
    const other = await node();
    const app = `rbac-${counter}`;
    await pod(warned.name, `${app}-0`, { owner: 'ReplicaSet' });
    assert.deepEqual(await run(steps.verifyNode, { nodeName: warned.name, instanceId: warned.instanceId }), { providerID: `aws:///us-east-1a/${warned.instanceId}` });
    assert.equal((await run(steps.findNodeForInstance, { instanceId: other.instanceId })).ready, true);
    const verdict = await run(workerSafety.assessScaleDownSafety, { nodeName: warned.name, bufferPercent: 10 });
    assert.deepEqual(verdict.pods, [`default/${app}-0`], `pods, nodes and budgets listed: ${verdict.reason}`);
    assert.deepEqual(await run(steps.taintNode, { nodeName: warned.name, taint: TAINT }), { alreadyTainted: false });
    assert.deepEqual(await run(steps.cordonNode, { nodeName: warned.name }), { alreadyCordoned: false });
    const report: DrainReport = await run(steps.evictPods, { nodeName: warned.name, deadline: new Date(Date.now() + 30_000).toISOString() });
    assert.deepEqual(report.evicted, [`default/${app}-0`]);
    assert.deepEqual(await run(steps.releaseNode, { nodeName: warned.name, taintKey: TAINT.key }), {});
    const watch = watchNodes(asWorker, workerCore);
    try {
      await until('the node watch in sync as the worker', async () => watch.current()?.has(warned.instanceId) === true, 10_000);
    } finally {
      await watch.stop();
    }

    const refused = async (what: string, call: () => Promise<unknown>): Promise<void> => {
      const status = await call().then(() => 'allowed', (error: unknown) => kubernetesStatus(error));
      assert.equal(status, 403, `${what} must be refused`);
    };
    await refused('deleting a node', () => workerCore.deleteNode({ name: other.name }));
    await refused('deleting a pod directly', () => workerCore.deleteNamespacedPod({ namespace: 'default', name: `${app}-0` }));
    await refused('creating a pod', () => workerCore.createNamespacedPod({ namespace: 'default', body: { metadata: { name: 'x' }, spec: { containers: [{ name: 'x', image: 'x' }] } } }));
    await refused('reading secrets', () => workerCore.listNamespacedSecret({ namespace: 'default' }));
    await refused('changing a pod', () => workerCore.patchNamespacedPod({ namespace: 'default', name: `${app}-0`, body: { metadata: { labels: { a: 'b' } } } }));
  });
});
