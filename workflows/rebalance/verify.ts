// Verify: a request about a node must name that node's own instance (its spec.providerID), in a protected spot group,
// whose pair the run then acts on. Nothing is changed before this passes; a mismatch or a group that is not protected
// fails the run for good.
import { ApplicationFailure, upsertSearchAttributes } from '@temporalio/workflow';
import { UNPROTECTED_GROUP } from '../shared/announcements.js';
import { rootMessage } from '../shared/failures.js';
import { isTerminatingState } from '../shared/ids.js';
import { searchAttributes } from '../shared/search-attributes.js';
import type { GroupPair } from '../shared/settings.js';
import { verifyNode, verifyProtectedInstance } from './activities.js';
import { announceStep, noticeKind } from './announce.js';
import type { RebalanceRun } from './run.js';

export async function verify(run: RebalanceRun): Promise<GroupPair> {
  const { instanceId, nodeName } = run;
  // The protected group the instance was found in, when the refusal comes after that (an instance already leaving).
  let group: string | undefined;
  try {
    await verifyNode({ nodeName, instanceId });
    const { lifecycleState, spotAsgName, onDemandAsgName } = await verifyProtectedInstance({ instanceId });
    group = spotAsgName;
    // Already leaving (terminated by Spot Guard or by someone else): its books are settled or being settled.
    if (isTerminatingState(lifecycleState)) throw new Error(`instance ${instanceId} is already leaving "${spotAsgName}" (${lifecycleState})`);
    return { spotAsgName, onDemandAsgName };
  } catch (error) {
    run.enterPhase('failed');
    upsertSearchAttributes([{ key: searchAttributes.outcome, value: 'rejected' }]);
    // No Event: the node named may not be this instance's.
    await announceStep(run, 'rejected', `rejected, nothing changed: ${rootMessage(error)}`, { notice: noticeKind(run), outcome: 'rejected', reason: rootMessage(error) }, { nodeName: null, group: group ?? UNPROTECTED_GROUP });
    throw ApplicationFailure.nonRetryable(`rejected, nothing changed: ${rootMessage(error)}`, 'RebalanceRejected');
  }
}
