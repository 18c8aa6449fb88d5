// The on-node signaler's settings, from its environment. Every bad value gets its own message naming the variable,
// the value and what is expected, and the signaler refuses to start. It holds no AWS, Kubernetes or Temporal
// credentials: only the path of its projected ServiceAccount token and the intake's address.
import { parseDurationSeconds } from '../workflows/shared/settings.js';
import { IMDS_URL } from './imds.js';

export interface SignalerSettings {
  intakeUrl: string;
  /** A CA bundle (PEM) the intake's certificate is checked against, instead of the system's. */
  intakeCaFile?: string;
  /** The projected ServiceAccount token, re-read before every delivery (the kubelet rotates it). */
  tokenFile: string;
  imdsUrl: string;
  imdsAllowV1: boolean;
  pollIntervalMs: number;
  rebalanceMonitoring: boolean;
  /** host:port of /healthz and /readyz. */
  healthAddress: string;
  /** From the downward API, for the logs. */
  nodeName?: string;
}

type Env = Record<string, string | undefined>;

export const SIGNALER_DEFAULTS = {
  SPOT_GUARD_TOKEN_FILE: '/var/run/secrets/spot-guard/token',
  SPOT_GUARD_IMDS_POLL_INTERVAL: '2s',
  SPOT_GUARD_SIGNALER_HEALTH_ADDRESS: '0.0.0.0:8081',
} as const;

export function loadSignalerConfig(env: Env): { settings: SignalerSettings } | { errors: string[] } {
  const errors: string[] = [];
  const intakeUrl = env.SPOT_GUARD_INTAKE_URL ?? '';
  if (!/^https?:\/\/[^/\s]+/.test(intakeUrl)) errors.push(`SPOT_GUARD_INTAKE_URL="${intakeUrl}": expected the intake's URL, like https://spot-guard-intake.spot-guard.svc:8443`);
  else if (intakeUrl.startsWith('http://') && env.SPOT_GUARD_INTAKE_ALLOW_HTTP !== 'true') {
    errors.push(`SPOT_GUARD_INTAKE_URL="${intakeUrl}": expected https:// (the token must not cross the network in clear); SPOT_GUARD_INTAKE_ALLOW_HTTP=true allows http:// for a local test`);
  }
  const poll = parseDurationSeconds(env.SPOT_GUARD_IMDS_POLL_INTERVAL ?? SIGNALER_DEFAULTS.SPOT_GUARD_IMDS_POLL_INTERVAL);
  if (poll === undefined || poll < 0.1 || poll > 60) errors.push(`SPOT_GUARD_IMDS_POLL_INTERVAL="${env.SPOT_GUARD_IMDS_POLL_INTERVAL}": expected a duration from 0.1s to 60s, like 2s`);
  const flags: Record<string, boolean> = {};
  for (const [name, fallback] of [['ENABLE_REBALANCE_MONITORING', 'true'], ['SPOT_GUARD_IMDS_ALLOW_V1', 'false']] as const) {
    const value = env[name] ?? fallback;
    if (value !== 'true' && value !== 'false') errors.push(`${name}="${value}": expected true or false`);
    flags[name] = value === 'true';
  }
  const healthAddress = env.SPOT_GUARD_SIGNALER_HEALTH_ADDRESS ?? SIGNALER_DEFAULTS.SPOT_GUARD_SIGNALER_HEALTH_ADDRESS;
  if (!/^[^\s:]*:\d{1,5}$/.test(healthAddress)) errors.push(`SPOT_GUARD_SIGNALER_HEALTH_ADDRESS="${healthAddress}": expected host:port, like 0.0.0.0:8081`);
  if (errors.length > 0) return { errors };
  return {
    settings: {
      intakeUrl: intakeUrl.replace(/\/+$/, ''),
      ...(env.SPOT_GUARD_INTAKE_CA_FILE ? { intakeCaFile: env.SPOT_GUARD_INTAKE_CA_FILE } : {}),
      tokenFile: env.SPOT_GUARD_TOKEN_FILE ?? SIGNALER_DEFAULTS.SPOT_GUARD_TOKEN_FILE,
      imdsUrl: env.SPOT_GUARD_IMDS_URL ?? IMDS_URL,
      imdsAllowV1: flags.SPOT_GUARD_IMDS_ALLOW_V1 ?? false,
      pollIntervalMs: (poll ?? 2) * 1000,
      rebalanceMonitoring: flags.ENABLE_REBALANCE_MONITORING ?? true,
      healthAddress,
      ...(env.NODE_NAME ? { nodeName: env.NODE_NAME } : {}),
    },
  };
}
