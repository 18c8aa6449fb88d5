// Kubernetes activities: the real @kubernetes/client-node against the fake API server, so the paths, content types
// and bodies checked here are exactly what the client puts on the wire.
import assert from 'node:assert/strict';
import { ApplicationFailure } from '@temporalio/common';
import { activityEnvironment } from './helpers/temporal.js';
import type { V1Pod } from '@kubernetes/client-node';
import { createKubernetesActivities, instanceIdFromProviderId, isRecreatable, leaveReason } from '../activities/kubernetes.js';
import type { DrainReport } from '../workflows/shared/activity-types.js';
import { FakeKubernetesApi } from './fakes/kubernetes-api.js';

const I1 = 'i-0123456789abcdef0';
const TAINT = { key: 'spot-instance-terminating', value: 'true', effect: 'NoSchedule' as const };

describe('Kubernetes activities', function () {
  let k8s: FakeKubernetesApi;
  let activities: ReturnType<typeof createKubernetesActivities>;
  const run = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> =>
    activityEnvironment().run(fn, ...args);

  beforeEach(async function () {
    k8s = await new FakeKubernetesApi().start();
    activities = createKubernetesActivities(k8s.coreApi(), { evictionRetrySeconds: 0.02 });
    k8s.addNode({ name: 'node-a', instanceId: I1, taints: [{ key: 'dedicated', value: 'batch', effect: 'NoSchedule' }] });
  });
  afterEach(async () => k8s.stop());

  it('taints with a strategic-merge patch that keeps the other taints and carries the resourceVersion', async function () {
    const resourceVersion = k8s.nodes.get('node-a')?.metadata?.resourceVersion;
    const result = await run(activities.taintNode, { nodeName: 'node-a', taint: TAINT });
    assert.deepEqual(result, { alreadyTainted: false });
    const [patch] = k8s.requestsMatching('PATCH', '/api/v1/nodes/node-a');
    assert.equal(patch?.contentType, 'application/strategic-merge-patch+json');
    assert.deepEqual(patch?.body, {
      metadata: { resourceVersion },
      spec: { taints: [{ key: 'dedicated', value: 'batch', effect: 'NoSchedule' }, TAINT] },
    });
    assert.deepEqual(k8s.nodes.get('node-a')?.spec?.taints?.map((t) => t.key), ['dedicated', 'spot-instance-terminating']);
  });

  it('tainting again changes nothing', async function () {
    await run(activities.taintNode, { nodeName: 'node-a', taint: TAINT });
    const again = await run(activities.taintNode, { nodeName: 'node-a', taint: TAINT });
    assert.deepEqual(again, { alreadyTainted: true });
    assert.equal(k8s.requestsMatching('PATCH', '/nodes/').length, 1);
  });

  it('a node changed under the patch (409) is read again and patched with the fresh list', async function () {
    k8s.conflictsBeforePatch = 1;
    k8s.onConflict = (node) => {
      node.spec = { ...node.spec, taints: [...(node.spec?.taints ?? []), { key: 'added-meanwhile', value: '', effect: 'NoExecute' }] };
    };
    await run(activities.taintNode, { nodeName: 'node-a', taint: TAINT });
    assert.equal(k8s.requestsMatching('PATCH', '/nodes/').length, 2);
    assert.deepEqual(k8s.nodes.get('node-a')?.spec?.taints?.map((t) => t.key), ['dedicated', 'added-meanwhile', 'spot-instance-terminating']);
  });

  it('cordons with a strategic-merge patch of spec.unschedulable', async function () {
    await run(activities.cordonNode, { nodeName: 'node-a' });
    const [patch] = k8s.requestsMatching('PATCH', '/api/v1/nodes/node-a');
    assert.equal(patch?.contentType, 'application/strategic-merge-patch+json');
    assert.deepEqual(patch?.body, { spec: { unschedulable: true } });
    assert.deepEqual(await run(activities.cordonNode, { nodeName: 'node-a' }), { alreadyCordoned: true });
  });

  it('drains through the Eviction API, skipping DaemonSet, mirror and finished pods', async function () {
    k8s.addPod({ name: 'web', nodeName: 'node-a', ownerKind: 'ReplicaSet' });
    k8s.addPod({ namespace: 'jobs', name: 'bare', nodeName: 'node-a' });
    k8s.addPod({ namespace: 'kube-system', name: 'cni', nodeName: 'node-a', ownerKind: 'DaemonSet' });
    k8s.addPod({ namespace: 'kube-system', name: 'static', nodeName: 'node-a', mirror: true });
    k8s.addPod({ namespace: 'jobs', name: 'done', nodeName: 'node-a', phase: 'Succeeded' });
    k8s.addPod({ name: 'elsewhere', nodeName: 'node-b', ownerKind: 'ReplicaSet' });
    const report = await run(activities.evictPods, { nodeName: 'node-a', deadline: new Date(Date.now() + 10_000).toISOString() });
    assert.equal(report.complete, true);
    assert.deepEqual(report.evicted.sort(), ['default/web', 'jobs/bare']);
    assert.deepEqual(report.skipped.sort(), ['jobs/done (finished pod)', 'kube-system/cni (DaemonSet pod)', 'kube-system/static (mirror pod)']);
    const evictions = k8s.requestsMatching('POST', '/eviction');
    assert.deepEqual(evictions.map((r) => r.path).sort(), ['/api/v1/namespaces/default/pods/web/eviction', '/api/v1/namespaces/jobs/pods/bare/eviction']);
    assert.deepEqual(evictions.find((r) => r.path.includes('/web/'))?.body, {
      apiVersion: 'policy/v1',
      kind: 'Eviction',
      metadata: { name: 'web', namespace: 'default' },
    });
    assert.deepEqual(k8s.podsOn('node-b'), ['default/elsewhere']);
  });

  it('tells the pods an eviction would lose: no controller (kubectl drain\'s --force), emptyDir of any medium (--delete-emptydir-data), an operator\'s annotation', function () {
    const pod = (metadata: V1Pod['metadata'], volumes: NonNullable<V1Pod['spec']>['volumes'] = []): V1Pod => ({
      metadata: { namespace: 'default', name: 'p', ...metadata },
      spec: { containers: [], volumes },
    });
    const owned = { ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'rs', uid: 'u', controller: true }] };
    const both = { onlyRecreatable: true, keepLocalData: true };
    const scratch = [{ name: 'scratch', emptyDir: {} }, { name: 'shm', emptyDir: { medium: 'Memory' } }, { name: 'logs', hostPath: { path: '/var/log' } }];
    assert.equal(leaveReason(pod(owned), both), undefined, 'a controller recreates it, no local data: it goes');
    assert.equal(leaveReason(pod({}), both), 'no controller: nothing recreates it');
    const notController = { ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'c', uid: 'u', controller: false }] };
    assert.equal(leaveReason(pod(notController), both), 'no controller: nothing recreates it', 'an owner that is no controller recreates nothing');
    assert.equal(leaveReason(pod(owned, scratch), both), 'emptyDir local storage (scratch, shm): its data would be lost', 'hostPath is no local storage to kubectl drain');
    assert.equal(leaveReason(pod({}, scratch), both), 'no controller: nothing recreates it; emptyDir local storage (scratch, shm): its data would be lost');
    assert.equal(leaveReason(pod(owned, [{ name: 'logs', hostPath: { path: '/var/log' } }]), both), undefined);
    assert.equal(leaveReason(pod({ annotations: { 'spot-guard.io/safe-to-evict': 'true' } }, scratch), both), undefined, 'an operator let it go');
    const forbidden = { ...owned, annotations: { 'cluster-autoscaler.kubernetes.io/safe-to-evict': 'false' } };
    assert.equal(leaveReason(pod(forbidden), both), 'annotated cluster-autoscaler.kubernetes.io/safe-to-evict=false: an operator forbade moving it');
    // Each option alone, and neither: a plain drain evicts them all.
    assert.equal(leaveReason(pod({}, scratch), { onlyRecreatable: true }), 'no controller: nothing recreates it');
    assert.equal(leaveReason(pod({}, scratch), { keepLocalData: true }), 'emptyDir local storage (scratch, shm): its data would be lost');
    assert.equal(leaveReason(pod({}, scratch), {}), undefined);
    assert.equal(leaveReason(pod(forbidden), {}), undefined);
    // The monitor's check is the same rule without local data.
    assert.deepEqual([pod(owned, scratch), pod({}), pod(forbidden)].map(isRecreatable), [true, false, false]);
  });

  it('a drain told to leave those pods evicts the rest, names each left pod with why, and is not complete; without it they go too', async function () {
    k8s.addPod({ name: 'web', nodeName: 'node-a', ownerKind: 'ReplicaSet' });
    k8s.addPod({ name: 'cache', nodeName: 'node-a', ownerKind: 'ReplicaSet', emptyDirs: ['scratch'] });
    k8s.addPod({ namespace: 'jobs', name: 'bare', nodeName: 'node-a' });
    k8s.addPod({ namespace: 'kube-system', name: 'cni', nodeName: 'node-a', ownerKind: 'DaemonSet', emptyDirs: ['run'] });
    const started = Date.now();
    const deadline = new Date(Date.now() + 10_000).toISOString();
    const report = await run(activities.evictPods, { nodeName: 'node-a', deadline, onlyRecreatable: true, keepLocalData: true });
    assert.ok(Date.now() - started < 5_000, 'the pods left are not waited for until the deadline');
    assert.deepEqual(report, {
      evicted: ['default/web'],
      skipped: ['kube-system/cni (DaemonSet pod)'],
      left: ['default/cache (emptyDir local storage (scratch): its data would be lost)', 'jobs/bare (no controller: nothing recreates it)'],
      remaining: [],
      complete: false,
    });
    assert.deepEqual(k8s.requestsMatching('POST', '/eviction').map((r) => r.path), ['/api/v1/namespaces/default/pods/web/eviction']);

    const everything = await run(activities.evictPods, { nodeName: 'node-a', deadline });
    assert.equal(everything.complete, true);
    assert.deepEqual(everything.evicted.sort(), ['default/cache', 'jobs/bare']);
    assert.deepEqual(everything.left, []);
    assert.deepEqual(k8s.podsOn('node-a'), ['kube-system/cni']);
  });

  it('the lists looked at until a condition holds are read from the API server\'s watch cache (resourceVersion=0)', async function () {
    k8s.addPod({ name: 'web', nodeName: 'node-a', ownerKind: 'ReplicaSet' });
    await run(activities.findNodeForInstance, { instanceId: I1 });
    await run(activities.findUnreadyNodes, { instanceIds: [I1], ignoreTaintKeys: [] });
    await run(activities.evictPods, { nodeName: 'node-a', deadline: new Date(Date.now() + 10_000).toISOString() });
    const lists = k8s.requests.filter((r) => r.method === 'GET' && /^\/api\/v1\/(nodes|pods)\?/.test(r.path));
    assert.ok(lists.length >= 3, lists.map((r) => r.path).join(', '));
    for (const list of lists) assert.match(list.path, /[?&]resourceVersion=0(&|$)/, list.path);
  });

  it('a PodDisruptionBudget refusal (429) is retried until the budget allows it, with progress heartbeats once the drain runs long', async function () {
    const patient = createKubernetesActivities(k8s.coreApi(), { evictionRetrySeconds: 0.1, firstHeartbeatAfterSeconds: 0.25 });
    k8s.addPod({ name: 'db-0', nodeName: 'node-a', ownerKind: 'StatefulSet' });
    k8s.pdbBlocks.set('default/db-0', 5);
    const heartbeats: { at: number; details: unknown }[] = [];
    const env = activityEnvironment();
    env.on('heartbeat', (details: unknown) => heartbeats.push({ at: Date.now(), details }));
    const started = Date.now();
    const report: DrainReport = await env.run(patient.evictPods, { nodeName: 'node-a', deadline: new Date(Date.now() + 10_000).toISOString() });
    assert.equal(report.complete, true);
    assert.equal(k8s.requestsMatching('POST', '/pods/db-0/eviction').length, 6, '5 refusals, then accepted');
    assert.ok(heartbeats.length > 0, 'a drain blocked past the first 0.25 s records its progress');
    assert.ok((heartbeats[0]?.at ?? 0) - started >= 250, `no heartbeat in the first 0.25 s: ${(heartbeats[0]?.at ?? 0) - started} ms`);
    assert.deepEqual(heartbeats[0]?.details, { evicted: [], remaining: ['default/db-0'], blocked: ['default/db-0'] });
  });

  it('a drain done within its first 10 s records no heartbeat: no Temporal write for progress nobody needs', async function () {
    k8s.addPod({ name: 'web-0', nodeName: 'node-a', ownerKind: 'ReplicaSet' });
    const heartbeats: unknown[] = [];
    const env = activityEnvironment();
    env.on('heartbeat', (details: unknown) => heartbeats.push(details));
    const report: DrainReport = await env.run(activities.evictPods, { nodeName: 'node-a', deadline: new Date(Date.now() + 10_000).toISOString() });
    assert.deepEqual(report.evicted, ['default/web-0']);
    assert.deepEqual(heartbeats, []);
  });

  it('stops at the deadline and reports what is left when a budget never allows eviction', async function () {
    k8s.addPod({ name: 'db-0', nodeName: 'node-a', ownerKind: 'StatefulSet' });
    k8s.pdbBlocks.set('default/db-0', Number.POSITIVE_INFINITY);
    const report = await run(activities.evictPods, { nodeName: 'node-a', deadline: new Date(Date.now() + 300).toISOString() });
    assert.equal(report.complete, false);
    assert.deepEqual(report.remaining, ['default/db-0']);
  });

  it('verifyNode accepts the node of its own instance and refuses any other', async function () {
    assert.deepEqual(await run(activities.verifyNode, { nodeName: 'node-a', instanceId: I1 }), { providerID: `aws:///us-east-1a/${I1}` });
    await assert.rejects(run(activities.verifyNode, { nodeName: 'node-a', instanceId: 'i-0aaaaaaaaaaaaaaaa' }), (error: unknown) => {
      assert.ok(error instanceof ApplicationFailure && error.nonRetryable);
      assert.equal(error.type, 'InstanceMismatch');
      assert.match(error.message, /names instance i-0123456789abcdef0, not i-0aaaaaaaaaaaaaaaa/);
      return true;
    });
    await assert.rejects(run(activities.verifyNode, { nodeName: 'node-zz', instanceId: I1 }), (error: unknown) => {
      assert.ok(error instanceof ApplicationFailure && error.nonRetryable);
      assert.equal(error.type, 'NodeNotFound');
      return true;
    });
  });

  it('finds the node of an instance by providerID, with its readiness', async function () {
    k8s.addNode({ name: 'node-new', instanceId: 'i-0bbbbbbbbbbbbbbbb', ready: false });
    assert.deepEqual(await run(activities.findNodeForInstance, { instanceId: 'i-0bbbbbbbbbbbbbbbb' }), { nodeName: 'node-new', ready: false });
    assert.deepEqual(await run(activities.findNodeForInstance, { instanceId: I1 }), { nodeName: 'node-a', ready: true });
    assert.deepEqual(await run(activities.findNodeForInstance, { instanceId: 'i-0cccccccccccccccc' }), { nodeName: undefined, ready: false });
  });

  it('a fresh look finds a node that registered after the list shared within a second was made', async function () {
    const shared = createKubernetesActivities(k8s.coreApi(), { nodeListCacheMs: 60_000 });
    assert.equal((await run(shared.findNodeForInstance, { instanceId: 'i-0dddddddddddddddd' })).nodeName, undefined);
    k8s.addNode({ name: 'node-late', instanceId: 'i-0dddddddddddddddd' });
    assert.equal((await run(shared.findNodeForInstance, { instanceId: 'i-0dddddddddddddddd' })).nodeName, undefined, 'the shared list is a moment old');
    assert.equal((await run(shared.findNodeForInstance, { instanceId: 'i-0dddddddddddddddd', fresh: true })).nodeName, 'node-late');
  });

  it('awaitNodeReady waits in one activity until the node is Ready, and answers what it saw when the deadline passes', async function () {
    const quick = createKubernetesActivities(k8s.coreApi(), { nodeListCacheMs: 20 });
    const I2 = 'i-0bbbbbbbbbbbbbbbb';
    k8s.addNode({ name: 'node-new', instanceId: I2, ready: false });
    setTimeout(() => k8s.setNodeReady('node-new', true), 200);
    const started = Date.now();
    const ready = await run(quick.awaitNodeReady, { instanceId: I2, deadline: new Date(Date.now() + 10_000).toISOString() });
    assert.deepEqual(ready, { nodeName: 'node-new', ready: true });
    assert.ok(Date.now() - started >= 150, 'it waited for the node to turn Ready');

    k8s.setNodeReady('node-new', false);
    await new Promise((resolve) => setTimeout(resolve, 50)); // past the shared list's period
    const late = await run(quick.awaitNodeReady, { instanceId: I2, deadline: new Date(Date.now() + 300).toISOString() });
    assert.deepEqual(late, { nodeName: 'node-new', ready: false });
    const missing = await run(quick.awaitNodeReady, { instanceId: 'i-0cccccccccccccccc', deadline: new Date(Date.now() + 100).toISOString() });
    assert.deepEqual(missing, { nodeName: undefined, ready: false });
    await assert.rejects(run(quick.awaitNodeReady, { instanceId: I2, deadline: 'soon' }), /node-ready deadline "soon" is not an ISO 8601 time/);
  });

  it('reads instance ids from AWS provider ids only', function () {
    assert.equal(instanceIdFromProviderId('aws:///eu-west-1b/i-0123456789abcdef0'), 'i-0123456789abcdef0');
    assert.equal(instanceIdFromProviderId('gce://project/zone/vm'), undefined);
    assert.equal(instanceIdFromProviderId(undefined), undefined);
  });

  it('an API server that is down is a retryable error, a malformed node name is not', async function () {
    await k8s.stop();
    await assert.rejects(run(activities.cordonNode, { nodeName: 'node-a' }), (error: unknown) => {
      assert.ok(!(error instanceof ApplicationFailure && error.nonRetryable), String(error));
      return true;
    });
    await assert.rejects(run(activities.cordonNode, { nodeName: 'Bad_Name' }), /"Bad_Name" is not a valid Kubernetes node name/);
    k8s = await new FakeKubernetesApi().start(); // for afterEach
  });
});
