// The workflows' one call to announce a step (workflows/shared/announcements.ts). A local activity: no round trip
// through the server, and its result is recorded, so a replay never runs it again. Announcing never fails or holds up
// a flow: the activity swallows its own failures, its attempts are few and short, and anything left is ignored here.
import { proxyLocalActivities } from '@temporalio/workflow';
import type { SpotGuardActivities } from './activity-types.js';
import type { StepAnnouncement } from './announcements.js';
import { withSummaries } from './user-metadata.js';

const { announceStep } = withSummaries(
  proxyLocalActivities<SpotGuardActivities>({
  startToCloseTimeout: '10 seconds',
  scheduleToCloseTimeout: '20 seconds',
    retry: { initialInterval: '1 second', maximumAttempts: 3 },
  }),
);

export async function announce(announcement: StepAnnouncement): Promise<void> {
  try {
    await announceStep(announcement);
  } catch {
    // Telling operators is never worth failing the flow it tells about.
  }
}
