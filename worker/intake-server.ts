// The intake as the worker serves it (SPOT_GUARD_INTAKE_ADDRESS): HTTPS with the configured certificate, the checks of
// worker/intake.ts over the real Kubernetes API and Auto Scaling, and the same two Temporal calls operators use
// (signaler/workflow-requests.ts), so a notice delivered twice still starts one workflow.
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { ApplicationFailure } from '@temporalio/common';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Client } from '@temporalio/client';
import { FailureType } from '../activities/errors.js';
import { reportInterruption, requestRebalance } from '../signaler/workflow-requests.js';
import type { AutoScalingActivities } from '../workflows/shared/activity-types.js';
import type { IntakeConfig } from './config.js';
import { type IntakeLog, intakeHandler } from './intake.js';
import { kubernetesIntakeDeps } from './intake-kubernetes.js';
import { listenOn } from './http-listen.js';

export interface IntakeContext {
  kubeConfig: KubeConfig;
  /** The worker's own verify activity, whose read of the group's members the workflows share. */
  verifyInstanceInGroup: AutoScalingActivities['verifyInstanceInGroup'];
  temporal: Client;
  taskQueue: string;
  spotAsgName: string;
  log: IntakeLog;
}

/** Starts listening; resolves once it does, with a close() for shutdown. */
export async function startIntake(config: IntakeConfig, context: IntakeContext): Promise<{ close(): Promise<void>; port: number }> {
  const handler = intakeHandler(
    {
      ...kubernetesIntakeDeps(context.kubeConfig),
      verifyProtected: (instanceId) => whyNotProtected(context.verifyInstanceInGroup, instanceId, context.spotAsgName),
      // The group it has just checked the instance is in: named in the workflow's summary.
      rebalance: (input) => requestRebalance(context.temporal, context.taskQueue, input, context.spotAsgName),
      interruption: async (input, notice) => ({ workflowId: (await reportInterruption(context.temporal, context.taskQueue, input, notice, context.spotAsgName)).workflowId }),
    },
    { audience: config.audience, signalerServiceAccount: config.signalerServiceAccount, requestsPerNodePerMinute: config.requestsPerNodePerMinute },
    context.log,
  );
  const server: Server = config.tls ? createHttpsServer({ cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) }, handler) : createHttpServer(handler);
  return listenOn(server, config.address);
}

/** The verify step's own check (its shared read of the group's members in a wave); only "not in the group" refuses. */
async function whyNotProtected(verify: IntakeContext['verifyInstanceInGroup'], instanceId: string, spotAsgName: string): Promise<string | undefined> {
  try {
    await verify({ instanceId, asgName: spotAsgName });
    return undefined;
  } catch (error) {
    if (error instanceof ApplicationFailure && error.type === FailureType.instanceNotInGroup) return error.message;
    throw error;
  }
}
