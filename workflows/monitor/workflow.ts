// The revert-to-spot monitor: one long-running workflow per spot/on-demand pair. Every 30 s (the check interval) it
// judges the spot group's health; once spot has been healthy without a break for the 2-minute stability window, it
// removes one on-demand node per cycle, preferring the fallback instances Spot Guard launched, and only when moving its
// pods is safe. All its memory lives in workflow state and crosses continue-as-new as plain objects.
import { allHandlersFinished, condition, continueAsNew, isCancellation, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { GroupSnapshot } from '../shared/activity-types.js';
import { rootMessage } from '../shared/failures.js';
import { searchAttributes } from '../shared/search-attributes.js';
import { checks, loadSettings } from './activities.js';
import type { HealthCheck, MonitorInput } from './api.js';
import { closeAndForgetEvents, pickCandidate } from './fallback-events.js';
import { MonitorRun } from './run.js';
import { abandonScaleDown, pastTimeLimit, releaseGivenUp, scaleDown, scaleDownTimeLimitSeconds } from './scale-down.js';
import { checkSpotHealth, updateHealthyStreak } from './stability.js';

const DEFAULT_HISTORY_BOUND = 10_000;

export async function monitorWorkflow(input: MonitorInput): Promise<never> {
  const run = new MonitorRun(input);
  if (workflowInfo().typedSearchAttributes.get(searchAttributes.asg) !== input.spotAsgName) {
    upsertSearchAttributes([{ key: searchAttributes.asg, value: input.spotAsgName }]);
  }
  run.useSettings(await loadSettings());
  const historyBound = input.historyBound ?? DEFAULT_HISTORY_BOUND;
  for (;;) {
    await runCycle(run);
    run.publishPhase();
    if (workflowInfo().continueAsNewSuggested || workflowInfo().historyLength >= historyBound) {
      await condition(allHandlersFinished);
      return continueAsNew<typeof monitorWorkflow>({ ...input, carried: run.state });
    }
    await condition(() => run.checkRequested, run.settings.monitor.checkIntervalSeconds * 1000);
    run.checkRequested = false;
  }
}

/**
 * One 30 s cycle: health and stability, cleanup, then (stable, not paused) one scale-down step. No activity failure
 * leaves it: the state, every tracked fallback with it, is kept, and the step is tried again next cycle.
 */
async function runCycle(run: MonitorRun): Promise<void> {
  const { state, settings } = run;
  const check = await checkSpotHealth(run);
  if (updateHealthyStreak(state, check, settings.monitor.checkIntervalSeconds) === 'broken') {
    run.note(`spot unhealthy, stability window restarts: ${check.reasons.join('; ')}`);
  }
  let onDemand: GroupSnapshot;
  try {
    onDemand = await checks.describeGroup({ asgName: run.onDemandAsgName });
  } catch (error) {
    run.note(`could not look at the on-demand group: ${rootMessage(error)}`);
    return;
  }
  closeAndForgetEvents(run, onDemand);
  try {
    await scaleDownStep(run, check, onDemand);
  } catch (error) {
    if (isCancellation(error)) throw error;
    const { inFlight } = state;
    const what = inFlight ? `scale-down of ${inFlight.instanceId} stopped at step ${inFlight.step}` : 'scale-down step failed';
    run.note(`${what}, tried again next cycle: ${rootMessage(error)}`);
  }
}

/**
 * A given-up scale-down's release first; one under way is given up when spot turned unhealthy (the on-demand node is
 * needed again) or it is past its time limit; stable and not paused: one step of one scale-down.
 */
async function scaleDownStep(run: MonitorRun, check: HealthCheck, onDemand: GroupSnapshot): Promise<void> {
  const { state } = run;
  const { inFlight } = state;
  if (inFlight?.step === 'releasing') return releaseGivenUp(run, inFlight);
  if (inFlight && !check.healthy) return abandonScaleDown(run, inFlight, `spot turned unhealthy (${check.reasons.join('; ')})`, false);
  if (inFlight && pastTimeLimit(run, inFlight)) {
    const limit = scaleDownTimeLimitSeconds(run.settings);
    return abandonScaleDown(run, inFlight, `not done within ${limit} s of its start (at step ${inFlight.step})`, true);
  }
  const stable = run.stableAt();
  if (state.paused || !check.healthy || stable === undefined || Date.now() < stable) return;
  const candidate = inFlight ?? pickCandidate(run, onDemand);
  if (candidate) await scaleDown(run, candidate);
}
