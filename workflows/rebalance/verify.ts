// Verify: a request about a node must name that node's own instance (its spec.providerID), in the spot group. Nothing
// is changed before this passes; a mismatch fails the run for good.
import { ApplicationFailure, upsertSearchAttributes } from '@temporalio/workflow';
import { rootMessage } from '../shared/failures.js';
import { searchAttributes } from '../shared/search-attributes.js';
import { verifyInstanceInGroup, verifyNode } from './activities.js';
import type { RebalanceRun } from './run.js';

export async function verify(run: RebalanceRun): Promise<void> {
  const { instanceId, nodeName, settings } = run;
  try {
    await verifyNode({ nodeName, instanceId });
    await verifyInstanceInGroup({ instanceId, asgName: settings.spotAsgName });
  } catch (error) {
    run.enterPhase('failed');
    upsertSearchAttributes([{ key: searchAttributes.outcome, value: 'rejected' }]);
    throw ApplicationFailure.nonRetryable(`rejected, nothing changed: ${rootMessage(error)}`, 'RebalanceRejected');
  }
}
