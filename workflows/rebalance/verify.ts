// Verify: a request about a node must name that node's own instance (its spec.providerID), in the spot group. Nothing
// is changed before this passes; a mismatch fails the run for good.
import { ApplicationFailure, upsertSearchAttributes } from '@temporalio/workflow';
import { rootMessage } from '../shared/failures.js';
import { isTerminatingState } from '../shared/ids.js';
import { searchAttributes } from '../shared/search-attributes.js';
import { verifyInstanceInGroup, verifyNode } from './activities.js';
import { announceStep, noticeKind } from './announce.js';
import type { RebalanceRun } from './run.js';

export async function verify(run: RebalanceRun): Promise<void> {
  const { instanceId, nodeName, settings } = run;
  try {
    await verifyNode({ nodeName, instanceId });
    const { lifecycleState } = await verifyInstanceInGroup({ instanceId, asgName: settings.spotAsgName });
    // Already leaving (terminated by Spot Guard or by someone else): its books are settled or being settled.
    if (isTerminatingState(lifecycleState)) throw new Error(`instance ${instanceId} is already leaving "${settings.spotAsgName}" (${lifecycleState})`);
  } catch (error) {
    run.enterPhase('failed');
    upsertSearchAttributes([{ key: searchAttributes.outcome, value: 'rejected' }]);
    // No Event: the node named may not be this instance's.
    await announceStep(run, 'rejected', `rejected, nothing changed: ${rootMessage(error)}`, { notice: noticeKind(run), outcome: 'rejected', reason: rootMessage(error) }, { nodeName: null });
    throw ApplicationFailure.nonRetryable(`rejected, nothing changed: ${rootMessage(error)}`, 'RebalanceRejected');
  }
}
