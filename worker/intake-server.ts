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
import type { ProtectedPairActivities } from '../workflows/shared/activity-types.js';
import type { IntakeConfig } from './config.js';
import { type IntakeLog, intakeHandler, type Protection } from './intake.js';
import { kubernetesIntakeDeps } from './intake-kubernetes.js';
import { listenOn } from './http-listen.js';

export interface IntakeContext {
  kubeConfig: KubeConfig;
  /** The worker's own verify activity, whose read of the protected groups' members the workflows share. */
  verifyProtectedInstance: ProtectedPairActivities['verifyProtectedInstance'];
  temporal: Client;
  taskQueue: string;
  log: IntakeLog;
}

/** Starts listening; resolves once it does, with a close() for shutdown. */
export async function startIntake(config: IntakeConfig, context: IntakeContext): Promise<{ close(): Promise<void>; port: number }> {
  const handler = intakeHandler(
    {
      ...kubernetesIntakeDeps(context.kubeConfig),
      verifyProtected: (instanceId) => protectionOf(context.verifyProtectedInstance, instanceId),
      // The pair's spot group the check has just found the instance in: named in the workflow's summary.
      rebalance: (input, spotAsgName) => requestRebalance(context.temporal, context.taskQueue, input, spotAsgName),
      interruption: async (input, notice, spotAsgName) => ({ workflowId: (await reportInterruption(context.temporal, context.taskQueue, input, notice, spotAsgName)).workflowId }),
    },
    { audience: config.audience, signalerServiceAccount: config.signalerServiceAccount, requestsPerNodePerMinute: config.requestsPerNodePerMinute },
    context.log,
  );
  const server: Server = config.tls ? createHttpsServer({ cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) }, handler) : createHttpServer(handler);
  return listenOn(server, config.address);
}

/**
 * The verify step's own check (its shared read of the groups' members in a wave): the pair's spot group, or, only for
 * "not in a protected group", a refusal.
 */
async function protectionOf(verify: IntakeContext['verifyProtectedInstance'], instanceId: string): Promise<Protection> {
  try {
    return { spotAsgName: (await verify({ instanceId })).spotAsgName };
  } catch (error) {
    const refusals: string[] = [FailureType.instanceNotInGroup, FailureType.groupNotProtected];
    if (error instanceof ApplicationFailure && refusals.includes(error.type ?? '')) return { refused: error.message };
    throw error;
  }
}
