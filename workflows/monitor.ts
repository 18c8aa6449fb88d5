// The revert-to-spot monitor: one long-running workflow per spot/on-demand pair. Every check interval it judges the spot
// group's health; once spot has been healthy without a break for the stability window, it removes one on-demand node
// per cycle, preferring the fallback instances Spot Guard launched, and only when moving its pods is safe. All of its
// memory (fallback events, the healthy streak, a scale-down under way) lives in workflow state and crosses
// continue-as-new as plain objects, so a worker restart neither resets nor fakes it.
import {
  allHandlersFinished,
  condition,
  continueAsNew,
  log,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { GroupSnapshot } from '../activities/auto-scaling.js';
import type { SpotGuardActivities } from '../activities/index.js';
import {
  checkNowSignal,
  type FallbackReport,
  fallbackLaunchedSignal,
  type FlowSettings,
  type HealthCheck,
  INSTANCE_ID_PATTERN,
  isTerminatingState,
  MAX_SCALE_DOWN_ATTEMPTS,
  type MonitorInput,
  type MonitorState,
  type MonitorStatus,
  monitorStatusQuery,
  pauseMonitorSignal,
  resumeMonitorSignal,
  type ScaleDownInFlight,
  searchAttributes,
} from './definitions.js';
import { rootMessage } from './failures.js';

const retry = { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' };

// A look that fails counts as "not healthy" for this cycle; the next cycle looks again.
const looks = proxyActivities<SpotGuardActivities>({
  startToCloseTimeout: '30 seconds',
  scheduleToCloseTimeout: '2 minutes',
  retry,
});

// Without its settings the monitor cannot do anything: wait for a worker as long as it takes.
const { loadSettings } = proxyActivities<SpotGuardActivities>({ startToCloseTimeout: '30 seconds', retry });

/**
 * Scale-down steps. Their bounds follow the configured drain and reschedule timeouts; a step that keeps failing is
 * given up for this cycle and resumed, on the same node, in the next one.
 */
function stepsFor(settings: FlowSettings) {
  const longest = Math.max(settings.drainTimeoutSeconds, settings.monitor.podRescheduleTimeoutSeconds);
  return proxyActivities<SpotGuardActivities>({
    startToCloseTimeout: `${longest + 60} seconds`,
    scheduleToCloseTimeout: `${longest + 600} seconds`,
    heartbeatTimeout: '1 minute',
    retry,
  });
}

const DEFAULT_HISTORY_BOUND = 10_000;
const MAX_NOTES = 50;

export async function monitorWorkflow(input: MonitorInput): Promise<never> {
  const { spotAsgName, onDemandAsgName } = input;
  const workflowId = workflowInfo().workflowId;
  const state: MonitorState = input.carried ?? { events: [], paused: false, scaleDowns: 0, notes: [] };
  let checkRequested = false;
  let settings: FlowSettings | undefined;
  let phase: MonitorStatus['phase'] | undefined;

  const isoNow = (): string => new Date().toISOString();
  function note(text: string): void {
    state.notes.push(`${isoNow()} ${text}`);
    if (state.notes.length > MAX_NOTES) state.notes.splice(0, state.notes.length - MAX_NOTES);
    log.info(text, { spotAsgName, onDemandAsgName });
  }

  function stableAt(): number | undefined {
    if (!state.healthySince || !settings) return undefined;
    return Date.parse(state.healthySince) + settings.monitor.stabilityWindowSeconds * 1000;
  }

  function currentPhase(): MonitorStatus['phase'] {
    if (state.paused) return 'paused';
    if (state.inFlight) return 'scaling-down';
    if (!state.lastCheck?.healthy) return 'waiting-for-health';
    const stable = stableAt();
    if (stable === undefined || Date.now() < stable) return 'waiting-for-stability';
    if (state.lastSafety && !state.lastSafety.safe) return 'blocked';
    return 'idle';
  }

  function publishPhase(): void {
    const next = currentPhase();
    if (next === phase) return;
    phase = next;
    upsertSearchAttributes([{ key: searchAttributes.phase, value: next }]);
  }

  setHandler(monitorStatusQuery, () => {
    const stable = stableAt();
    return {
      ...state,
      spotAsgName,
      onDemandAsgName,
      stableAt: stable === undefined ? undefined : new Date(stable).toISOString(),
      phase: currentPhase(),
    };
  });
  setHandler(fallbackLaunchedSignal, (report: FallbackReport) => {
    if (!INSTANCE_ID_PATTERN.test(report?.onDemandInstanceId ?? '')) {
      log.warn('ignoring a fallback report without a valid on-demand instance id', { report });
      return;
    }
    if (state.events.some((e) => e.onDemandInstanceId === report.onDemandInstanceId)) return; // reported twice
    state.events.push({ ...report, state: 'tracked' });
    note(`tracking on-demand fallback ${report.onDemandInstanceId} (launched for ${report.warnedInstanceId} on ${report.warnedNodeName})`);
  });
  setHandler(pauseMonitorSignal, (request) => {
    state.paused = true;
    state.pausedReason = request?.reason || 'paused by an operator';
    note(`paused: ${state.pausedReason}`);
  });
  setHandler(resumeMonitorSignal, () => {
    if (!state.paused) return;
    state.paused = false;
    state.pausedReason = undefined;
    checkRequested = true;
    note('resumed');
  });
  setHandler(checkNowSignal, () => {
    checkRequested = true;
  });

  if (workflowInfo().typedSearchAttributes.get(searchAttributes.asg) !== spotAsgName) {
    upsertSearchAttributes([{ key: searchAttributes.asg, value: spotAsgName }]);
  }
  settings = await loadSettings();
  const steps = stepsFor(settings);

  const historyBound = input.historyBound ?? DEFAULT_HISTORY_BOUND;
  for (;;) {
    await runCycle(settings);
    publishPhase();
    if (workflowInfo().continueAsNewSuggested || workflowInfo().historyLength >= historyBound) {
      await condition(allHandlersFinished);
      return continueAsNew<typeof monitorWorkflow>({ spotAsgName, onDemandAsgName, historyBound: input.historyBound, carried: state });
    }
    await condition(() => checkRequested, settings.monitor.checkIntervalSeconds * 1000);
    checkRequested = false;
  }

  // --- one cycle ------------------------------------------------------------------------------------------------

  async function runCycle(s: FlowSettings): Promise<void> {
    const previous = state.lastCheck;
    const check = await checkSpotHealth(s);
    state.lastCheck = check;
    // Time nobody looked at (a worker outage, a long scale-down) is no proof of health: the streak starts again.
    const unobserved = previous !== undefined && Date.parse(check.at) - Date.parse(previous.at) > 3 * s.monitor.checkIntervalSeconds * 1000;
    if (!check.healthy) {
      if (state.healthySince) note(`spot unhealthy, stability window restarts: ${check.reasons.join('; ')}`);
      state.healthySince = undefined;
    } else if (unobserved || state.healthySince === undefined) {
      state.healthySince = check.at;
    }

    let onDemand: GroupSnapshot;
    try {
      onDemand = await looks.describeGroup({ asgName: onDemandAsgName });
    } catch (error) {
      note(`could not look at the on-demand group: ${rootMessage(error)}`);
      return;
    }
    closeAndForgetEvents(onDemand, s);

    const inFlight = state.inFlight;
    if (!check.healthy && inFlight?.step === 'draining') {
      // Spot turned unhealthy halfway: the on-demand node is needed again.
      await abandon(inFlight, s, `spot turned unhealthy (${check.reasons.join('; ')})`, false);
      return;
    }
    const stable = stableAt();
    if (state.paused || !check.healthy || stable === undefined || Date.now() < stable) return;
    const candidate = inFlight ?? pickCandidate(onDemand, s);
    if (!candidate) {
      state.lastSafety = undefined; // nothing is blocked when there is nothing to remove
      return;
    }
    try {
      await scaleDown(candidate, s);
    } catch (error) {
      note(`scale-down of ${candidate.instanceId} stopped, resumed next cycle: ${rootMessage(error)}`);
    }
  }

  /** Gives a scale-down up: the node is made schedulable again and, when it failed, the event counts the attempt. */
  async function abandon(candidate: ScaleDownInFlight, s: FlowSettings, reason: string, failed: boolean): Promise<void> {
    if (candidate.nodeName) await steps.releaseNode({ nodeName: candidate.nodeName, taintKey: s.monitor.scaleDownTaint.key });
    const event = state.events.find((e) => e.onDemandInstanceId === candidate.instanceId);
    if (event && failed) event.failedAttempts = (event.failedAttempts ?? 0) + 1;
    state.inFlight = undefined;
    state.lastSafety = { at: isoNow(), instanceId: candidate.instanceId, nodeName: candidate.nodeName, safe: false, reason };
    note(`scale-down of ${candidate.instanceId} given up, node schedulable again: ${reason}`);
  }

  async function checkSpotHealth(s: FlowSettings): Promise<HealthCheck> {
    const at = isoNow();
    try {
      const health = await looks.describeGroupHealth({ asgName: spotAsgName, since: state.failuresCountedSince });
      const reasons: string[] = [];
      if (health.inService.length !== health.desiredCapacity) {
        reasons.push(`${health.inService.length} of ${health.desiredCapacity} desired instances InService`);
      }
      if (health.notInService.length > 0) reasons.push(`instances not InService: ${health.notInService.join(', ')}`);
      if (health.activitiesInProgress.length > 0) reasons.push(`scaling in progress: ${health.activitiesInProgress.join(', ')}`);
      if (health.failuresSince.length > 0) reasons.push(`scaling failed since the last check: ${health.failuresSince.join('; ')}`);
      const nodes = await looks.findUnreadyNodes({
        instanceIds: health.inService,
        ignoreTaintKeys: [s.taint.key, s.monitor.scaleDownTaint.key],
      });
      reasons.push(...nodes.unready);
      state.failuresCountedSince = at;
      return { at, healthy: reasons.length === 0, reasons };
    } catch (error) {
      return { at, healthy: false, reasons: [`could not check the spot group: ${rootMessage(error)}`] };
    }
  }

  /** Events whose instance left the group are closed; closed events older than the cleanup age are forgotten. */
  function closeAndForgetEvents(onDemand: GroupSnapshot, s: FlowSettings): void {
    const present = new Set(onDemand.instances.filter((i) => !isTerminatingState(i.lifecycleState)).map((i) => i.instanceId));
    for (const event of state.events) {
      if (event.state === 'tracked' && !present.has(event.onDemandInstanceId) && state.inFlight?.instanceId !== event.onDemandInstanceId) {
        event.state = 'gone';
        event.closedAt = isoNow();
        note(`on-demand fallback ${event.onDemandInstanceId} left the group without Spot Guard`);
      }
    }
    const horizon = Date.now() - s.monitor.cleanupAfterSeconds * 1000;
    state.events = state.events.filter((e) => e.state === 'tracked' || Date.parse(e.closedAt ?? '') > horizon);
  }

  /**
   * The oldest fallback instance still InService that has itself been up for the stability window (a fresh one may
   * still be taking the warned node's pods); others only when configured to. Never below the group's MinSize.
   */
  function pickCandidate(onDemand: GroupSnapshot, s: FlowSettings): ScaleDownInFlight | undefined {
    if (onDemand.desiredCapacity <= onDemand.minSize) {
      if (state.events.some((e) => e.state === 'tracked')) note(`on-demand group at its MinSize (${onDemand.minSize}): nothing to remove`);
      return undefined;
    }
    const settledBefore = Date.now() - s.monitor.stabilityWindowSeconds * 1000;
    const inService = new Set(onDemand.instances.filter((i) => i.lifecycleState === 'InService').map((i) => i.instanceId));
    const fresh = (instanceId: string, launchedBySpotGuard: boolean): ScaleDownInFlight => ({
      instanceId,
      launchedBySpotGuard,
      step: 'draining',
      startedAt: isoNow(),
      attempts: 0,
      owners: [],
    });
    const tracked = state.events
      .filter((e) => e.state === 'tracked' && inService.has(e.onDemandInstanceId))
      .filter((e) => (e.failedAttempts ?? 0) < MAX_SCALE_DOWN_ATTEMPTS && Date.parse(e.launchedAt) <= settledBefore)
      .sort((a, b) => a.launchedAt.localeCompare(b.launchedAt));
    if (tracked[0]) return fresh(tracked[0].onDemandInstanceId, true);
    if (!s.monitor.removeUnlaunchedOnDemand) return undefined;
    const known = new Set(state.events.map((e) => e.onDemandInstanceId));
    const other = [...inService].find((id) => !known.has(id));
    return other ? fresh(other, false) : undefined;
  }

  /** Taint, cordon, drain, wait for the pods to land, then terminate that very instance with decrement. */
  async function scaleDown(candidate: ScaleDownInFlight, s: FlowSettings): Promise<void> {
    const { instanceId } = candidate;
    if (candidate.step === 'draining') {
      if (candidate.nodeName === undefined) {
        candidate.nodeName = (await looks.findNodeForInstance({ instanceId })).nodeName;
      }
      const nodeName = candidate.nodeName;
      const event = state.events.find((e) => e.onDemandInstanceId === instanceId);
      if (!nodeName && event && Date.now() - Date.parse(event.launchedAt) < s.nodeReadyTimeoutSeconds * 1000) {
        // Not joined yet: it may be about to take pods. Only an instance that never joined in time counts as empty.
        state.lastSafety = { at: isoNow(), instanceId, safe: false, reason: `${instanceId} has no Kubernetes node yet` };
        return;
      }
      if (nodeName) {
        const safety = await looks.assessScaleDownSafety({ nodeName, bufferPercent: s.monitor.capacityBufferPercent });
        state.lastSafety = { at: isoNow(), instanceId, nodeName, safe: safety.safe, reason: safety.reason };
        if (!safety.safe) {
          note(`not removing ${instanceId} (${nodeName}) yet: ${safety.reason}`);
          return;
        }
        candidate.owners = mergeOwners(candidate.owners, safety.owners);
      } else {
        state.lastSafety = { at: isoNow(), instanceId, safe: true, reason: `${instanceId} has no Kubernetes node: nothing to move` };
      }
      // From here on the node is changed: remember it, so a failure resumes this node and never starts on another.
      state.inFlight = candidate;
      candidate.attempts++;
      publishPhase();
      if (nodeName) {
        note(`removing on-demand ${instanceId} (${nodeName}): ${state.lastSafety.reason}`);
        await steps.taintNode({ nodeName, taint: s.monitor.scaleDownTaint });
        await steps.cordonNode({ nodeName });
        const deadline = new Date(Date.now() + s.drainTimeoutSeconds * 1000).toISOString();
        const report = await steps.evictPods({ nodeName, deadline, onlyRecreatable: true });
        if (!report.complete) {
          const reason = `drain incomplete, ${report.remaining.length} pod(s) left: ${report.remaining.join(', ')}`;
          if (candidate.attempts >= MAX_SCALE_DOWN_ATTEMPTS) return abandon(candidate, s, reason, true);
          state.lastSafety = { at: isoNow(), instanceId, nodeName, safe: false, reason };
          note(`drain of ${nodeName} incomplete; resumed next cycle`);
          return;
        }
      }
      candidate.step = 'awaiting-pods';
    }
    if (state.paused) return; // paused between steps: resumed from here
    if (candidate.step === 'awaiting-pods') {
      if (candidate.nodeName && candidate.owners.length > 0) {
        const deadline = new Date(Date.now() + s.monitor.podRescheduleTimeoutSeconds * 1000).toISOString();
        const landed = await steps.awaitPodsRescheduled({
          owners: candidate.owners,
          nodeName: candidate.nodeName,
          deadline,
          maxSeconds: s.monitor.podRescheduleTimeoutSeconds,
        });
        if (!landed.settled) {
          // Their pods cannot run elsewhere (constraints the room check cannot see): the node is needed after all.
          return abandon(candidate, s, `moved pods did not start elsewhere within ${s.monitor.podRescheduleTimeoutSeconds} s: ${landed.waitingFor.join(', ')}`, true);
        }
      }
      candidate.step = 'terminating';
    }
    if (state.paused) return;
    candidate.attempts++;
    const retired = await steps.requestInstanceRetirement({
      asgName: onDemandAsgName,
      requestId: `${workflowId}/scale-down/${instanceId}/${candidate.attempts}`,
      instanceId,
      terminate: true,
      ifAbsent: 'leave',
    });
    const event = state.events.find((e) => e.onDemandInstanceId === instanceId);
    if (event) {
      event.state = retired.status === 'not-in-group' ? 'gone' : 'removed';
      event.closedAt = isoNow();
    }
    state.inFlight = undefined;
    if (retired.status === 'not-in-group') {
      note(`on-demand ${instanceId} left the group before Spot Guard terminated it; nothing changed`);
      return;
    }
    state.scaleDowns++;
    note(`on-demand ${instanceId} removed (${retired.status}); ${state.scaleDowns} removed so far`);
  }
}

function mergeOwners(a: ScaleDownInFlight['owners'], b: ScaleDownInFlight['owners']): ScaleDownInFlight['owners'] {
  const byUid = new Map([...a, ...b].map((o) => [o.uid, o]));
  return [...byUid.values()];
}
