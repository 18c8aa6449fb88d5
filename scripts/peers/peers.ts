// Where the test harness finds the peers installed by scripts/peers.sh. Nothing is downloaded at test time: a
// missing peer is an error that says how to install it.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { cacheDir } from '../../worker/config.js';

function peer(envName: string, relative: string): string {
  const path = process.env[envName] || join(cacheDir(), relative);
  if (!existsSync(path)) throw new Error(`${path} is missing: run scripts/peers.sh (or set ${envName})`);
  return path;
}

export const temporalCliPath = (): string => peer('SPOT_GUARD_TEMPORAL_CLI', 'venv/bin/temporal');
export const temporalTestServerPath = (): string => peer('SPOT_GUARD_TEMPORAL_TEST_SERVER', 'venv/bin/temporal-test-server');
export const pythonPath = (): string => peer('SPOT_GUARD_PYTHON', 'venv/bin/python');
export const kubeApiserverPath = (): string => peer('SPOT_GUARD_KUBE_APISERVER', 'kubernetes-v1.34.2/bin/kube-apiserver');
export const kubeControllerManagerPath = (): string => peer('SPOT_GUARD_KUBE_CONTROLLER_MANAGER', 'kubernetes-v1.34.2/bin/kube-controller-manager');
export const kubeSchedulerPath = (): string => peer('SPOT_GUARD_KUBE_SCHEDULER', 'kubernetes-v1.34.2/bin/kube-scheduler');
/** The pinned kubectl (with kustomize), not whichever the machine has on its PATH. */
export const kubectlPath = (): string => peer('SPOT_GUARD_KUBECTL', 'kubernetes-v1.34.2/bin/kubectl');
export const etcdPath = (): string => peer('SPOT_GUARD_ETCD', 'etcd-v3.6.16/bin/etcd');
export const kwokPath = (): string => peer('SPOT_GUARD_KWOK', 'kwok-v0.7.0/bin/kwok');
export const aemmPath = (): string => peer('SPOT_GUARD_AEMM', 'aemm-v1.13.0/bin/ec2-metadata-mock');
export const composePath = (): string => peer('SPOT_GUARD_COMPOSE', 'compose-v2.40.3/bin/docker-compose');
