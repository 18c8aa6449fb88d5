// The worker's start-up preflight against real peers (moto's Auto Scaling, a real kube-apiserver with RBAC): nothing
// to report for the account of deploy/base/rbac.yaml and two existing groups; one line per problem otherwise (a missing
// group, no credentials, no rights, an API server out of reach). Then the real worker process as a new user starts it
// (no AWS credentials, a Kubernetes account without rights): each problem said once, and a quiet minute after it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AutoScalingClient, CreateAutoScalingGroupCommand, CreateLaunchConfigurationCommand } from '@aws-sdk/client-auto-scaling';
import { KubeConfig, type KubernetesObject, KubernetesObjectApi, loadAllYaml } from '@kubernetes/client-node';
import { AwsLauncher } from '../scripts/peers/aws-launcher.js';
import { KubernetesStack } from '../scripts/peers/kubernetes-stack.js';
import { temporalCliPath } from '../scripts/peers/peers.js';
import { stopOnExit } from '../scripts/peers/stop-on-exit.js';
import { freePort, until } from '../scripts/peers/wait.js';
import { WORKER_LAUNCH_ENV, WORKER_NODE_FLAGS } from '../worker/memory.js';
import { type PreflightTarget, preflightProblems } from '../worker/preflight.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const REGION = 'us-east-1';
const GROUPS: PreflightTarget['groups'] = [{ setting: 'SPOT_ASG_NAME', name: 'pf-spot' }, { setting: 'ON_DEMAND_ASG_NAME', name: 'pf-od' }];

describe('start-up preflight (moto, kube-apiserver)', function () {
  this.timeout(180_000);
  let aws: AwsLauncher;
  let k8s: KubernetesStack;
  let asWorker: KubeConfig;
  let asNobody: KubeConfig;

  before(async function () {
    [aws, k8s] = await Promise.all([new AwsLauncher().start(), new KubernetesStack().start()]);
    const autoScaling = aws.client();
    await autoScaling.send(new CreateLaunchConfigurationCommand({ LaunchConfigurationName: 'nodes', ImageId: 'ami-12c6146b', InstanceType: 'm5.large' }));
    for (const { name } of GROUPS) {
      await autoScaling.send(new CreateAutoScalingGroupCommand({ AutoScalingGroupName: name, LaunchConfigurationName: 'nodes', MinSize: 0, MaxSize: 2, DesiredCapacity: 0, AvailabilityZones: ['us-east-1a'] }));
    }
    const admin = KubernetesObjectApi.makeApiClient(k8s.kubeConfig());
    for (const object of loadAllYaml(readFileSync(join(repoRoot, 'deploy', 'base', 'rbac.yaml'), 'utf8')) as KubernetesObject[]) await admin.create(object);
    await k8s.coreApi().createNamespacedServiceAccount({ namespace: 'default', body: { metadata: { name: 'nobody' } } });
    [asWorker, asNobody] = [await k8s.kubeConfigAs('spot-guard', 'spot-guard-worker'), await k8s.kubeConfigAs('default', 'nobody')];
  });

  after(async function () {
    await Promise.all([aws?.stop(), k8s?.stop()]);
  });

  it('finds nothing wrong with both groups in AWS and the service account of deploy/base/rbac.yaml (with the intake\'s rights)', async function () {
    assert.deepEqual(await preflightProblems({ autoScaling: aws.client(), region: REGION, groups: GROUPS, kubeConfig: asWorker, intakeNamespace: 'spot-guard' }), []);
  });

  it('names a group that does not exist by its setting, in one line', async function () {
    const groups: PreflightTarget['groups'] = [GROUPS[0], { setting: 'ON_DEMAND_ASG_NAME', name: 'no-such-group' }];
    const problems = await preflightProblems({ autoScaling: aws.client(), region: REGION, groups, kubeConfig: asWorker });
    assert.equal(problems.length, 1, problems.join('\n'));
    assert.match(problems[0] ?? '', /"no-such-group" \(ON_DEMAND_ASG_NAME\)/);
  });

  it('without AWS credentials or Kubernetes rights: one line each, with what to do', async function () {
    const noCredentials = new AutoScalingClient({
      region: REGION,
      endpoint: aws.url,
      credentials: () => Promise.reject(Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' })),
    });
    const problems = await preflightProblems({ autoScaling: noCredentials, region: REGION, groups: GROUPS, kubeConfig: asNobody });
    assert.equal(problems.length, 2, problems.join('\n'));
    assert.match(problems[0] ?? '', /^AWS: .*no credentials.*deploy\/iam-policy\.json/);
    assert.match(problems[1] ?? '', /^Kubernetes: the worker may not .*patch nodes.*create pods\/eviction.*: .*deploy\/base\/rbac\.yaml/);
    for (const problem of problems) assert.equal(problem.includes('\n'), false);
  });

  it('an API server out of reach: one line naming it', async function () {
    const nowhere = new KubeConfig();
    nowhere.loadFromOptions({
      clusters: [{ name: 'nowhere', server: `https://127.0.0.1:${await freePort()}`, skipTLSVerify: true }],
      users: [{ name: 'nobody', token: 'x' }],
      contexts: [{ name: 'nowhere', cluster: 'nowhere', user: 'nobody' }],
      currentContext: 'nowhere',
    });
    const problems = await preflightProblems({ autoScaling: aws.client(), region: REGION, groups: GROUPS, kubeConfig: nowhere });
    assert.equal(problems.length, 1, problems.join('\n'));
    assert.match(problems[0] ?? '', /^Kubernetes: cannot reach the API server at https:\/\/127\.0\.0\.1:\d+/);
  });

  it('the worker started as a new user (no AWS credentials, no Kubernetes rights): each problem once, one line each, then quiet', async function () {
    const dir = mkdtempSync(join(tmpdir(), 'spot-guard-preflight-'));
    writeFileSync(join(dir, 'kubeconfig'), asNobody.exportConfig());
    const child = spawn(process.execPath, [...WORKER_NODE_FLAGS, join(repoRoot, 'dist', 'worker', 'main.js')], {
      env: {
        ...WORKER_LAUNCH_ENV,
        PATH: process.env.PATH ?? '',
        HOME: dir, // no ~/.aws
        SPOT_ASG_NAME: 'pf-spot',
        ON_DEMAND_ASG_NAME: 'pf-od',
        AWS_REGION: REGION,
        AWS_ENDPOINT_URL_AUTO_SCALING: aws.url,
        KUBECONFIG: join(dir, 'kubeconfig'),
        TEMPORAL_ADDRESS: '',
        SPOT_GUARD_TEMPORAL_CLI: temporalCliPath(),
        SPOT_GUARD_DEV_SERVER_PORT: String(await freePort()),
        SPOT_GUARD_DEV_UI_PORT: String(await freePort()),
        SPOT_GUARD_DEV_DB: join(dir, 'temporal.sqlite'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    stopOnExit(child);
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      await until('the worker to poll', () => output.includes('worker polling task queues'), 90_000, () => output);
      const startedLines = output.split('\n').length;
      await new Promise((resolve) => setTimeout(resolve, 60_000));
      const lines = output.split('\n').filter((line) => line.trim());
      const records = lines.map((line) => {
        try {
          return JSON.parse(line) as Record<string, unknown>;
        } catch {
          assert.fail(`not a JSON line (stdout is a pipe, so the log is JSON lines): ${line}`);
        }
      });
      const messages = records.map((r) => String(r.message));
      console.log(`      ${lines.length} lines in all, ${lines.length - startedLines + 1} in the minute after "worker polling"`);
      assert.equal(messages.filter((m) => m.startsWith('preflight: AWS:')).length, 1, messages.join('\n'));
      assert.equal(messages.filter((m) => m.startsWith('preflight: Kubernetes:')).length, 1, messages.join('\n'));
      const failures = records.filter((r) => r.message === 'Activity failed');
      assert.ok(failures.length > 0, 'its activities keep retrying');
      for (const failure of failures) {
        assert.equal(failure.errorStack, undefined, `a known cause, no stack: ${JSON.stringify(failure)}`);
        assert.match(String(failure.error), /CredentialsProviderError|HTTP 403|KubernetesRequestRejected/);
        assert.ok(failure.workflowId && failure.activityType, 'which workflow and activity, as fields');
      }
      assert.ok(lines.length - startedLines < 60, `quiet after the start: ${lines.slice(startedLines - 1).join('\n')}`);
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => (child.exitCode === null ? child.once('exit', resolve) : resolve(undefined)));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
