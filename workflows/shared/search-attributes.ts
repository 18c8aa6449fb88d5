// Search attributes: registered on the namespace at worker start so the Temporal UI can filter by them.
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const searchAttributes = {
  instanceId: defineSearchAttributeKey('SpotGuardInstanceId', SearchAttributeType.KEYWORD),
  node: defineSearchAttributeKey('SpotGuardNode', SearchAttributeType.KEYWORD),
  asg: defineSearchAttributeKey('SpotGuardAsg', SearchAttributeType.KEYWORD),
  phase: defineSearchAttributeKey('SpotGuardPhase', SearchAttributeType.KEYWORD),
  outcome: defineSearchAttributeKey('SpotGuardOutcome', SearchAttributeType.KEYWORD),
} as const;

export const allSearchAttributeKeys = Object.values(searchAttributes);
