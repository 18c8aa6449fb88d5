// The local stack's stand-in for what AWS and the kubelets do in a real cluster (docker-compose.yml, service
// `stand-in`). Plain Node.js 24, no dependencies: it runs in the public node image with this file mounted.
//
//   node stand-in.mjs          set up, then keep the cluster in step with the groups (the service's command)
//   node stand-in.mjs next     make another spot instance the one at risk (then restart aemm and signaler)
//
// Set up once: the spot and on-demand Auto Scaling groups in moto (behind scripts/peers/aws_launcher.py), the
// signaler's namespace, ServiceAccount and DaemonSet in the kwok cluster, and a demo Deployment. Then, every 2 s, a
// kwok node for each InService instance, as its kubelet would register it (spot nodes labelled
// node.kubernetes.io/lifecycle=spot, so the DaemonSet's controller puts a signaler pod on each).
//
// The signaler's token: in a cluster the kubelet projects it into the signaler pod. Here the stand-in asks the
// TokenRequest API for the same token (audience spot-guard-intake, bound to the DaemonSet's pod on the at-risk node)
// and writes it where the signaler container reads it, renewed every 20 minutes; it also writes AEMM's config, whose
// instance-id is that node's instance. So the intake's checks (TokenReview, pod on that node, the node's providerID,
// the instance in the spot group) run for real.
/* global fetch, URLSearchParams -- Node.js globals, not in the lint's list for scripts */
import { chmodSync, chownSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

const settings = {
  motoUrl: process.env.MOTO_URL ?? 'http://moto:5000',
  kubeApi: process.env.KUBE_API ?? 'http://kwok:8080',
  spotGroup: process.env.SPOT_ASG_NAME ?? 'spot-guard-demo-spot',
  onDemandGroup: process.env.ON_DEMAND_ASG_NAME ?? 'spot-guard-demo-on-demand',
  spotInstances: Number(process.env.SPOT_INSTANCES ?? '3'),
  launchDelaySeconds: Number(process.env.LAUNCH_DELAY_SECONDS ?? '20'),
  namespace: 'spot-guard',
  serviceAccount: 'spot-guard-signaler',
  audience: process.env.SPOT_GUARD_INTAKE_AUDIENCE ?? 'spot-guard-intake',
  tokenFile: process.env.TOKEN_FILE ?? '/run/spot-guard/signaler/token',
  signalerUid: Number(process.env.SIGNALER_UID ?? '65532'),
  aemmConfigFile: process.env.AEMM_CONFIG_FILE ?? '/run/spot-guard/aemm/aemm-config.json',
  readyFile: process.env.READY_FILE ?? '/tmp/stand-in-ready',
};

const SPOT_LABEL = 'node.kubernetes.io/lifecycle';
const SIGNALER_LABELS = { 'app.kubernetes.io/name': 'spot-guard-signaler' };
const TOKEN_SECONDS = 3600;
const TOKEN_RENEW_MS = 20 * 60_000;

const say = (message) => console.log(`[stand-in] ${message}`);

// ---- AWS Auto Scaling (moto): the query protocol, which moto routes by the credential scope of the signature.

async function autoScaling(action, params = {}) {
  const response = await fetch(`${settings.motoUrl}/`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      // moto reads the service from the scope and does not check the signature; the keys are moto's dummies.
      authorization: 'AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/autoscaling/aws4_request, SignedHeaders=host, Signature=0',
    },
    body: new URLSearchParams({ Action: action, Version: '2011-01-01', ...params }),
  });
  const text = await response.text();
  if (!response.ok && !text.includes('<Code>AlreadyExists</Code>')) throw new Error(`Auto Scaling ${action}: HTTP ${response.status} ${text.slice(0, 400)}`);
}

async function launcher(command, body) {
  const response = await fetch(`${settings.motoUrl}/_launcher/${command}`, { method: 'POST', body: JSON.stringify(body) });
  if (!response.ok) throw new Error(`launcher ${command}: HTTP ${response.status} ${await response.text()}`);
  return response.json();
}

async function createGroups() {
  await autoScaling('CreateLaunchConfiguration', { LaunchConfigurationName: 'spot-guard-demo', ImageId: 'ami-12c6146b', InstanceType: 'm5.large' });
  for (const [name, desired] of [[settings.spotGroup, settings.spotInstances], [settings.onDemandGroup, 0]]) {
    await autoScaling('CreateAutoScalingGroup', {
      AutoScalingGroupName: name,
      LaunchConfigurationName: 'spot-guard-demo',
      MinSize: '0',
      MaxSize: '10',
      DesiredCapacity: String(desired),
      'AvailabilityZones.member.1': 'us-east-1a',
    });
  }
  // From now on a new instance is Pending for a while before it is InService, as in AWS: the wait shows in the UI.
  for (const group of [settings.spotGroup, settings.onDemandGroup]) await launcher('delay', { group, seconds: settings.launchDelaySeconds });
  say(`groups ${settings.spotGroup} (${settings.spotInstances} instances) and ${settings.onDemandGroup} (empty) ready in moto`);
}

/** InService instances of both groups, spot first, each with the group it is in. */
async function inServiceInstances() {
  const instances = [];
  for (const group of [settings.spotGroup, settings.onDemandGroup]) {
    const view = await launcher('instances', { group });
    for (const instance of view.instances) if (instance.state === 'InService') instances.push({ id: instance.id, spot: group === settings.spotGroup });
  }
  return instances;
}

// ---- Kubernetes (the kwok cluster's API, through its kubectl proxy).

async function kube(method, path, body, { allow = [] } = {}) {
  const response = await fetch(`${settings.kubeApi}${path}`, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  if (allow.includes(response.status)) return undefined;
  const text = await response.text();
  if (!response.ok) throw new Error(`Kubernetes ${method} ${path}: HTTP ${response.status} ${text.slice(0, 400)}`);
  return JSON.parse(text);
}

const create = (path, body) => kube('POST', path, body, { allow: [409] });

async function createSignalerObjects() {
  const ns = settings.namespace;
  await create('/api/v1/namespaces', { metadata: { name: ns } });
  await create(`/api/v1/namespaces/${ns}/serviceaccounts`, { metadata: { name: settings.serviceAccount } });
  // The signaler's DaemonSet, on spot nodes only. kwok only pretends to run its pods; the real signaler is the compose
  // service `signaler`, which speaks for the at-risk node's pod with that pod's token.
  await create(`/apis/apps/v1/namespaces/${ns}/daemonsets`, {
    metadata: { name: 'spot-guard-signaler', labels: SIGNALER_LABELS },
    spec: {
      selector: { matchLabels: SIGNALER_LABELS },
      template: {
        metadata: { labels: SIGNALER_LABELS },
        spec: {
          serviceAccountName: settings.serviceAccount,
          nodeSelector: { [SPOT_LABEL]: 'spot' },
          tolerations: [{ operator: 'Exists' }],
          containers: [{ name: 'signaler', image: 'spot-guard:compose', args: ['signaler'] }],
        },
      },
    },
  });
  // Something for the drain to move: a Deployment's pods, recreated on the other nodes when evicted.
  await create('/apis/apps/v1/namespaces/default/deployments', {
    metadata: { name: 'demo-web' },
    spec: {
      replicas: 4,
      selector: { matchLabels: { app: 'demo-web' } },
      template: {
        metadata: { labels: { app: 'demo-web' } },
        spec: { containers: [{ name: 'web', image: 'registry.invalid/demo-web:1', resources: { requests: { cpu: '250m', memory: '256Mi' } } }] },
      },
    },
  });
  say(`namespace ${ns}, ServiceAccount ${settings.serviceAccount}, the signaler DaemonSet and the demo-web Deployment ready`);
}

const nodeName = (instanceId) => `ip-${instanceId.slice(2)}`;

/** The kubelet stand-in: a Ready kwok node for every InService instance that has none yet. */
async function syncNodes() {
  const existing = new Set((await kube('GET', '/api/v1/nodes')).items.map((node) => node.metadata.name));
  for (const instance of await inServiceInstances()) {
    const name = nodeName(instance.id);
    if (existing.has(name)) continue;
    const resources = { cpu: '4', memory: '16Gi', pods: '110' };
    await create('/api/v1/nodes', {
      metadata: { name, labels: { [SPOT_LABEL]: instance.spot ? 'spot' : 'normal' }, annotations: { 'kwok.x-k8s.io/node': 'fake' } },
      spec: { providerID: `aws:///us-east-1a/${instance.id}` },
      status: { allocatable: resources, capacity: resources },
    });
    say(`node ${name} registered for ${instance.spot ? 'spot' : 'on-demand'} instance ${instance.id}`);
  }
}

// ---- The at-risk instance: its signaler pod's token and AEMM's config.

/** The DaemonSet's pod on a node, once its controller has put one there. */
async function signalerPodOn(node, timeoutMs = 120_000) {
  const selector = encodeURIComponent(Object.entries(SIGNALER_LABELS).map(([k, v]) => `${k}=${v}`).join(','));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pods = await kube('GET', `/api/v1/namespaces/${settings.namespace}/pods?labelSelector=${selector}&fieldSelector=spec.nodeName%3D${node}`);
    const pod = pods.items.find((p) => !p.metadata.deletionTimestamp);
    if (pod) return pod;
    if (Date.now() > deadline) throw new Error(`no pod of the DaemonSet spot-guard-signaler on node ${node} after ${timeoutMs / 1000} s: is the kwok cluster's controller manager running?`);
    await sleep(1000);
  }
}

/** What the kubelet projects into the signaler pod: a token for the intake's audience, bound to the pod. */
async function writeSignalerToken(node) {
  const pod = await signalerPodOn(node);
  const request = await kube('POST', `/api/v1/namespaces/${settings.namespace}/serviceaccounts/${settings.serviceAccount}/token`, {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec: { audiences: [settings.audience], expirationSeconds: TOKEN_SECONDS, boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: pod.metadata.name, uid: pod.metadata.uid } },
  });
  // Readable by the signaler's user only, as a projected token is by the pod's.
  writeAtomically(settings.tokenFile, request.status.token, 0o400, settings.signalerUid);
  return pod.metadata.name;
}

function writeAtomically(file, text, mode, uid) {
  const partial = `${file}.partial`;
  writeFileSync(partial, text, { mode });
  chmodSync(partial, mode);
  if (uid !== undefined) chownSync(partial, uid, uid);
  renameSync(partial, file);
}

function currentAtRisk() {
  if (!existsSync(settings.aemmConfigFile)) return undefined;
  return JSON.parse(readFileSync(settings.aemmConfigFile, 'utf8')).metadata?.values?.['instance-id'];
}

/** Makes `instanceId` the instance whose IMDS (AEMM) serves the rebalance recommendation, with its pod's token. */
async function markAtRisk(instanceId) {
  const node = nodeName(instanceId);
  const pod = await writeSignalerToken(node);
  const config = { metadata: { values: { 'instance-id': instanceId } }, spot: { action: 'terminate' } };
  writeAtomically(settings.aemmConfigFile, JSON.stringify(config, null, 2), 0o644);
  say(`at risk: instance ${instanceId}, node ${node}; the signaler speaks with the token of pod ${settings.namespace}/${pod}`);
}

/** A spot instance with a node and no notice yet: not the current one, its node not tainted by Spot Guard. */
async function nextAtRisk() {
  const current = currentAtRisk();
  const nodes = new Map((await kube('GET', '/api/v1/nodes')).items.map((n) => [n.metadata.name, n]));
  const candidates = (await inServiceInstances()).filter((i) => i.spot && i.id !== current && nodes.has(nodeName(i.id)) && !(nodes.get(nodeName(i.id)).spec.taints ?? []).some((t) => !t.key.startsWith('node.kubernetes.io/')));
  if (candidates.length === 0) throw new Error(`no other spot instance of ${settings.spotGroup} with a node and no notice yet`);
  return candidates.map((i) => i.id).sort()[0];
}

async function waitFor(what, check, timeoutMs = 180_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`${what}: ${error.message}`, { cause: error });
      await sleep(2000);
    }
  }
}

async function serve() {
  await waitFor('moto', createGroups);
  await waitFor('the kwok cluster', createSignalerObjects);
  await syncNodes();
  // A restart keeps the at-risk instance of the volume's config while it is still in the group (after `down` without
  // -v, moto starts empty and it is not: another is picked).
  const current = currentAtRisk();
  const stillThere = (await inServiceInstances()).some((i) => i.spot && i.id === current);
  await markAtRisk(stillThere ? current : await nextAtRisk());
  writeFileSync(settings.readyFile, new Date().toISOString());
  let renewedAt = Date.now();
  for (;;) {
    await sleep(2000);
    try {
      await syncNodes();
      if (Date.now() - renewedAt > TOKEN_RENEW_MS) {
        await writeSignalerToken(nodeName(currentAtRisk()));
        renewedAt = Date.now();
      }
    } catch (error) {
      say(`sync failed, trying again: ${error.message}`);
    }
  }
}

async function main() {
  const mode = process.argv[2] ?? 'serve';
  if (mode === 'serve') return serve();
  if (mode === 'next') {
    await markAtRisk(await nextAtRisk());
    say('now restart AEMM and the signaler: docker compose restart aemm signaler');
    return undefined;
  }
  throw new Error(`unknown mode ${JSON.stringify(mode)}: expected serve (the default) or next`);
}

main().catch((error) => {
  console.error(`[stand-in] ${error.message}`);
  process.exit(1);
});
