// The whole chain end to end: AEMM serves a rebalance recommendation → the signaler process on "the node" (its
// projected token: a real TokenRequest for its pod on that node) → the intake served by the real worker over HTTPS →
// the rebalance workflow on the Temporal dev server → moto and Kubernetes. Counted in the end-to-end scenario count.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createNetServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WorkflowHandle } from '@temporalio/client';
import { rebalanceStatusQuery } from '../workflows/rebalance/api.js';
import { rebalanceWorkflowId } from '../workflows/shared/ids.js';
import type { rebalanceWorkflow } from '../workflows/rebalance/workflow.js';
import { type Aemm, startAemm } from '../scripts/peers/aemm.js';
import { EndToEnd, ON_DEMAND, SPOT } from '../scripts/peers/end-to-end.js';
import { stopOnExit } from '../scripts/peers/stop-on-exit.js';
import { SIGNALER_NODE_FLAGS } from '../signaler/node-flags.js';
import { freePort, until } from '../scripts/peers/wait.js';
import { scenarioPassed } from './helpers/scenario-count.js';

const SIGNALER = fileURLToPath(new URL('../signaler/main.js', import.meta.url));
const NAMESPACE = 'spot-guard';
const AUDIENCE = 'spot-guard-intake';

describe('end to end: IMDS → signaler → intake → worker (the whole chain)', function () {
  this.timeout(240_000);
  let e2e: EndToEnd;
  let dir: string;
  let intakeUrl: string;
  let aemm: Aemm | undefined;
  let signaler: ChildProcess | undefined;
  let signalerOutput = '';

  before(async function () {
    dir = mkdtempSync(join(tmpdir(), 'spot-guard-chain-'));
    // The intake's certificate, for 127.0.0.1, which the signaler trusts through SPOT_GUARD_INTAKE_CA_FILE.
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'tls.key'), '-out', join(dir, 'tls.crt')], { stdio: 'ignore' });
    const intakeAddress = `127.0.0.1:${await freePort()}`;
    intakeUrl = `https://${intakeAddress}`;
    e2e = await new EndToEnd().start();
    await e2e.startWorker({ SPOT_GUARD_INTAKE_ADDRESS: intakeAddress, SPOT_GUARD_INTAKE_TLS_CERT: join(dir, 'tls.crt'), SPOT_GUARD_INTAKE_TLS_KEY: join(dir, 'tls.key') });
    await e2e.core.createNamespace({ body: { metadata: { name: NAMESPACE } } });
    await e2e.core.createNamespacedServiceAccount({ namespace: NAMESPACE, body: { metadata: { name: 'spot-guard-signaler' } } });
  });
  after(async function () {
    if (signaler?.exitCode === null) signaler.kill('SIGKILL');
    await aemm?.stop();
    await e2e?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  afterEach(function () {
    if (this.currentTest?.state === 'passed') scenarioPassed('end-to-end', this.currentTest.title);
    if (this.currentTest?.state === 'failed') console.error(`worker output:\n${e2e.workerLog().slice(-4000)}\nsignaler output:\n${signalerOutput.slice(-3000)}`);
  });

  /** The signaler's pod on the node, and its projected token (audience spot-guard-intake, bound to the pod). */
  async function signalerToken(nodeName: string): Promise<string> {
    const name = `signaler-${nodeName.slice(-6)}`;
    // A DaemonSet's pod, as the signaler's is: the drain leaves it (it tolerates Spot Guard's taint and keeps running).
    const ownerReferences = [{ apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'spot-guard-signaler', uid: '00000000-0000-0000-0000-000000000001', controller: true }];
    const pod = await e2e.core.createNamespacedPod({ namespace: NAMESPACE, body: { metadata: { name, ownerReferences }, spec: { nodeName, serviceAccountName: 'spot-guard-signaler', containers: [{ name: 'signaler', image: 'spot-guard' }] } } });
    const { status } = await e2e.core.createNamespacedServiceAccountToken({
      name: 'spot-guard-signaler',
      namespace: NAMESPACE,
      body: { spec: { audiences: [AUDIENCE], expirationSeconds: 600, boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name, uid: pod.metadata?.uid } } },
    });
    assert.ok(status?.token);
    return status.token;
  }

  /** A fresh spot pair with the at-risk node and a pod on it; its signaler against AEMM serving `notices`. */
  async function chainFor(notices: { rebalanceDelaySeconds: number | null; interruptionDelaySeconds?: number | null }, intake = intakeUrl) {
    const [atRisk] = await e2e.groups(2);
    assert.ok(atRisk);
    const nodeName = EndToEnd.nodeName(atRisk);
    await until('the at-risk node', async () => (await e2e.core.readNode({ name: nodeName })).metadata?.name === nodeName);
    await e2e.pod(nodeName, `web-${atRisk.slice(-6)}`);
    writeFileSync(join(dir, 'token'), await signalerToken(nodeName));
    await aemm?.stop();
    aemm = await startAemm({ instanceId: atRisk, ...notices });
    if (signaler?.exitCode === null) signaler.kill('SIGKILL');
    signalerOutput = '';
    signaler = spawn(process.execPath, [...SIGNALER_NODE_FLAGS, SIGNALER], {
      env: {
        PATH: process.env.PATH,
        SPOT_GUARD_INTAKE_URL: intake,
        SPOT_GUARD_INTAKE_CA_FILE: join(dir, 'tls.crt'),
        SPOT_GUARD_TOKEN_FILE: join(dir, 'token'),
        SPOT_GUARD_IMDS_URL: aemm.url,
        SPOT_GUARD_IMDS_POLL_INTERVAL: '0.5s',
        SPOT_GUARD_SIGNALER_HEALTH_ADDRESS: `127.0.0.1:${await freePort()}`,
        NODE_NAME: nodeName,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    stopOnExit(signaler);
    signaler.stdout?.on('data', (chunk: Buffer) => (signalerOutput += chunk.toString()));
    signaler.stderr?.on('data', (chunk: Buffer) => (signalerOutput += chunk.toString()));
    return { atRisk, nodeName, handle: e2e.client.workflow.getHandle<typeof rebalanceWorkflow>(rebalanceWorkflowId(atRisk)) };
  }

  async function resultOf(handle: WorkflowHandle<typeof rebalanceWorkflow>) {
    let last = '';
    const closed = async (): Promise<boolean> => {
      last = JSON.stringify(await handle.query(rebalanceStatusQuery).catch((error: unknown) => String(error)));
      return (await handle.describe()).status.name !== 'RUNNING';
    };
    await until('the rebalance workflow to end', closed, 150_000, () => `status: ${last}`);
    return handle.result();
  }

  async function runsOf(atRisk: string): Promise<number> {
    let runs = 0;
    for await (const _run of e2e.client.workflow.list({ query: `WorkflowId = '${rebalanceWorkflowId(atRisk)}'` })) runs++;
    return runs;
  }

  it('a rebalance recommendation in IMDS: the signaler reports it, the intake starts one workflow, the node is replaced, tainted and drained, the books exact', async function () {
    const { atRisk, nodeName, handle } = await chainFor({ rebalanceDelaySeconds: 2 });
    await until('the rebalance notice delivered', async () => /rebalance recommendation delivered/.test(signalerOutput), 60_000, () => signalerOutput);
    const result = await resultOf(handle);
    assert.equal(result.replacement, 'spot');
    assert.equal(result.instanceFate, 'terminated');
    assert.equal((await handle.query(rebalanceStatusQuery)).drain?.complete, true);
    assert.deepEqual(await e2e.nodeState(nodeName), { taints: ['spot-instance-terminating=true:NoSchedule'], cordoned: true });
    const spot = await e2e.group(SPOT);
    assert.equal(spot.desired, 2, 'back to its original size');
    assert.ok(!spot.instances.some((i) => i.id === atRisk), 'the drained instance is gone');
    assert.ok(spot.instances.some((i) => i.id === result.replacementInstanceId));
    assert.equal((await e2e.group(ON_DEMAND)).desired, 0);
    // IMDS goes on serving the recommendation every 0.5 s: a minute of it starts nothing more.
    await new Promise((resolve) => setTimeout(resolve, 60_000));
    assert.equal(await runsOf(atRisk), 1, 'one workflow for the instance');
    assert.equal(signalerOutput.match(/rebalance recommendation delivered/g)?.length, 1);
  });

  it('an interruption notice in IMDS: the signaler reports it at once, and the node is drained', async function () {
    const { atRisk, nodeName, handle } = await chainFor({ rebalanceDelaySeconds: null, interruptionDelaySeconds: 2 });
    await until('the interruption notice delivered', async () => /interruption notice delivered/.test(signalerOutput), 60_000, () => signalerOutput);
    const result = await resultOf(handle);
    assert.equal(result.drained, true);
    assert.equal(result.instanceFate, 'terminated');
    const status = await handle.query(rebalanceStatusQuery);
    assert.equal(status.interruption?.action, 'terminate');
    assert.equal(status.drain?.complete, true);
    // What the UI's list shows: the summary names the group the intake checked the instance in.
    assert.equal(await (await handle.describe()).staticSummary(), `rebalance ${atRisk} on node ${nodeName} (group ${SPOT})`);
    assert.deepEqual(await e2e.nodeState(nodeName), { taints: ['spot-instance-terminating=true:NoSchedule'], cordoned: true });
    assert.equal(await runsOf(atRisk), 1);
  });

  it('the intake down when the notice appears and up 20 s later: the workflow still starts, once', async function () {
    // A TCP gate in front of the worker's intake: connections are refused until it opens (TLS passes through it).
    const gatePort = await freePort();
    const target = Number(new URL(intakeUrl).port);
    const gate = createNetServer((socket) => {
      const upstream = connect(target, '127.0.0.1');
      socket.pipe(upstream).pipe(socket);
      const close = (): void => void (socket.destroy(), upstream.destroy());
      socket.on('error', close);
      upstream.on('error', close);
    });
    try {
      const { atRisk, handle } = await chainFor({ rebalanceDelaySeconds: 2 }, `https://127.0.0.1:${gatePort}`);
      await until('a delivery refused', async () => /not delivered: trying again/.test(signalerOutput), 30_000, () => signalerOutput);
      const downSince = Date.now();
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, 20_000 - (Date.now() - downSince))));
      assert.equal(await runsOf(atRisk), 0, 'nothing started while the intake was down');
      await new Promise<void>((resolve) => gate.listen(gatePort, '127.0.0.1', resolve));
      await until('the rebalance notice delivered', async () => /rebalance recommendation delivered/.test(signalerOutput), 60_000, () => signalerOutput);
      const result = await resultOf(handle);
      assert.equal(result.replacement, 'spot');
      assert.equal(result.instanceFate, 'terminated');
      assert.equal(await runsOf(atRisk), 1);
      assert.equal(signalerOutput.match(/rebalance recommendation delivered/g)?.length, 1);
    } finally {
      gate.close();
    }
  });
});
