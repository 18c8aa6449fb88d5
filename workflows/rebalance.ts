// The rebalance workflow: one per warned instance. Replacement capacity first (spot, then on-demand), then taint and
// drain the at-risk node, then keep the books so the spot group ends at its original size. Its history reads like the
// runbook an operator would follow by hand.
import {
  ApplicationFailure,
  condition,
  getExternalWorkflowHandle,
  log,
  patched,
  proxyActivities,
  proxyLocalActivities,
  type SignalDefinition,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { ActivityInterfaceFor } from '@temporalio/workflow';
import type { SpotGuardActivities } from '../activities/index.js';
import {
  capacityAnswerSignal,
  type CapacityPhase,
  capacityWorkflowId,
  describeDrainBudget,
  drainNowSignal,
  type DrainSlotAnswer,
  drainSlotAnswerSignal,
  type FlowSettings,
  INSTANCE_ID_PATTERN,
  type InstanceFate,
  type NodeLook,
  interruptionNoticeSignal,
  NODE_NAME_PATTERN,
  type RebalanceInput,
  type RebalancePhase,
  type RebalanceResult,
  type RebalanceStatus,
  rebalanceStatusQuery,
  releaseDrainSlotSignal,
  replacementAnswerSignal,
  type RetireInstanceRequest,
  type RetireInstanceResult,
  retirementAnswerSignal,
  type ScaleAttempt,
  searchAttributes,
} from './definitions.js';
import type { IncreaseCapacityResult } from './definitions.js';
import { rootMessage } from './failures.js';

const retry = { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' };

// No overall deadline: an API that is down for a while is retried until it answers (the pending activity, its attempt
// count and last error are visible in the UI); input that can never succeed fails at once, non-retryable.
const plainOptions = { startToCloseTimeout: '30 seconds', retry } as const;
// One poll is worth little once the next is due: a failed poll counts as "no news" and the wait goes on.
const briefOptions = { startToCloseTimeout: '20 seconds', scheduleToCloseTimeout: '1 minute', retry } as const;
// A capacity request may queue behind others of the same group in its capacity workflow, which gives up on AWS after
// 10 minutes and answers with a failure; the request itself is retried until the capacity workflow answers.
const requestOptions = { startToCloseTimeout: '2 minutes', retry } as const;

const { reportFallbackToMonitor, requestInstanceRetirement } = proxyActivities<SpotGuardActivities>(plainOptions);
const { describeScaleOut } = proxyActivities<SpotGuardActivities>(briefOptions);
/** The node-Ready look inside the workflow task that got the replacement's answer: long enough for a node registering. */
const NODE_READY_QUICK_LOOK_MS = 5_000;
const { awaitNodeReady: quickNodeReadyLook } = proxyLocalActivities<SpotGuardActivities>({
  startToCloseTimeout: `${NODE_READY_QUICK_LOOK_MS / 1000 + 10} seconds`,
  scheduleToCloseTimeout: `${NODE_READY_QUICK_LOOK_MS / 1000 + 30} seconds`,
  retry,
});

/** The short steps of the runbook: reads, one write each, requests to the capacity workflow. */
function shortSteps(plain: ActivityInterfaceFor<SpotGuardActivities>, brief: typeof plain, request: typeof plain) {
  const { loadSettings, verifyNode, verifyInstanceInGroup, taintNode, cordonNode } = plain;
  const { requestCapacityIncrease, requestDrainSlot, requestInstanceRetirement } = request;
  return {
    loadSettings,
    verifyNode,
    verifyInstanceInGroup,
    taintNode,
    cordonNode,
    requestCapacityIncrease,
    requestDrainSlot,
    requestInstanceRetirement,
    // Tried for a minute at most: the slot's lease frees it anyway, and the workflow should not wait on it.
    giveBackDrainSlot: brief.releaseDrainSlot,
    findNodeForInstanceBriefly: brief.findNodeForInstance,
  };
}

// Since 'local-steps' the short steps run as local activities: inside the workflow task that reaches them, without a
// round trip through the server's activity queue each. A wave starts hundreds of workflows at once and the server's
// writes are what it waits on; the steps are as retried, as idempotent and as visible in the UI (as local activities).
const remoteSteps = shortSteps(
  proxyActivities<SpotGuardActivities>(plainOptions),
  proxyActivities<SpotGuardActivities>(briefOptions),
  proxyActivities<SpotGuardActivities>(requestOptions),
);
const localSteps = shortSteps(
  proxyLocalActivities<SpotGuardActivities>(plainOptions),
  proxyLocalActivities<SpotGuardActivities>(briefOptions),
  proxyLocalActivities<SpotGuardActivities>(requestOptions),
);

// Benchmark only: the original flow's own read-modify-write of desired capacity.
const { describeGroup, setDesiredCapacity } = proxyActivities<SpotGuardActivities>({
  startToCloseTimeout: '30 seconds',
  scheduleToCloseTimeout: '10 minutes',
  retry,
});

type Grant = Extract<IncreaseCapacityResult, { status: 'granted' }>;

const isoNow = (): string => new Date().toISOString();

export async function rebalanceWorkflow(input: RebalanceInput): Promise<RebalanceResult> {
  requireValidInput(input);
  const { loadSettings, verifyNode, verifyInstanceInGroup, taintNode, cordonNode, requestCapacityIncrease, requestDrainSlot, findNodeForInstanceBriefly } =
    patched('local-steps') ? localSteps : remoteSteps;
  const { instanceId, nodeName } = input;
  const workflowId = workflowInfo().workflowId;
  const status: RebalanceStatus = {
    instanceId,
    nodeName,
    phase: 'verifying',
    capacityPhase: 'not-started',
    startedAt: isoNow(),
    phaseChangedAt: isoNow(),
    spot: { asgName: '' },
    notes: [],
  };

  setHandler(rebalanceStatusQuery, () => status);
  setHandler(interruptionNoticeSignal, (notice) => {
    if (status.interruption) return; // IMDS repeats the notice every poll; the first one counts
    status.interruption = { ...notice, receivedAt: isoNow() };
    log.warn('spot interruption notice: skipping the wait, draining now', { instanceId, action: notice.action, time: notice.time });
  });
  setHandler(drainNowSignal, (request) => {
    if (status.drainRequest) return;
    status.drainRequest = { ...request, receivedAt: isoNow() };
    log.info('operator asked to drain now', { instanceId, reason: request.reason });
  });
  const drainRequested = (): boolean => status.interruption !== undefined || status.drainRequest !== undefined;
  // Answers of the capacity workflows (which poll the groups for every waiting workflow), by request id.
  const capacityAnswers = answersOf(capacityAnswerSignal);
  const replacementAnswers = answersOf(replacementAnswerSignal);
  const retirementAnswers = answersOf(retirementAnswerSignal);
  const drainSlotRequestId = `${workflowId}/drain`;
  let groupWideWait = false;
  let drainSlotAnswer: DrainSlotAnswer | undefined;
  setHandler(drainSlotAnswerSignal, takeDrainSlotAnswer);
  function takeDrainSlotAnswer(answer: DrainSlotAnswer): void {
    if (answer.requestId !== drainSlotRequestId || drainSlotAnswer?.status === 'granted') return;
    drainSlotAnswer = answer;
  }
  /** Since 'drain-slot-with-replacement' the spot group's answer about the replacement carries the drain slot. */
  let drainSlotAskedWithReplacement = false;
  const drainSlotGranted = (): boolean => drainSlotAnswer?.status === 'granted';

  function enterPhase(phase: RebalancePhase): void {
    status.phase = phase;
    status.phaseChangedAt = isoNow();
    upsertSearchAttributes([{ key: searchAttributes.phase, value: phase }]);
  }
  function enterCapacityPhase(phase: CapacityPhase): void {
    status.capacityPhase = phase;
  }
  function note(text: string): void {
    status.notes.push(`${isoNow()} ${text}`);
    log.info(text, { instanceId });
  }

  upsertSearchAttributes([
    { key: searchAttributes.instanceId, value: instanceId },
    { key: searchAttributes.node, value: nodeName },
    { key: searchAttributes.phase, value: status.phase },
  ]);

  const settings = await loadSettings();
  status.spot.asgName = settings.spotAsgName;
  upsertSearchAttributes([{ key: searchAttributes.asg, value: settings.spotAsgName }]);

  // 1. Verify: a request about a node must name that node's own instance, in the spot group. Nothing is changed
  //    before this passes.
  try {
    await verifyNode({ nodeName, instanceId });
    await verifyInstanceInGroup({ instanceId, asgName: settings.spotAsgName });
  } catch (error) {
    enterPhase('failed');
    upsertSearchAttributes([{ key: searchAttributes.outcome, value: 'rejected' }]);
    throw ApplicationFailure.nonRetryable(`rejected, nothing changed: ${rootMessage(error)}`, 'RebalanceRejected');
  }

  // 2-4. Replacement capacity, in the background: an interruption notice must not wait for it.
  enterPhase('adding-capacity');
  let capacitySettled = false;
  const capacity = addReplacementCapacity().finally(() => {
    capacitySettled = true;
  });
  await condition(() => capacitySettled || drainRequested());

  // 5. Taint: after the replacement is there, after both scale-ups failed, or at once on an interruption notice.
  enterPhase('tainting');
  const tainted = await taintNode({ nodeName, taint: settings.taint });
  if (tainted.nodeGone) note(`node ${nodeName} is gone from Kubernetes (deleted or reclaimed)`);
  else status.taintedAt = isoNow();

  // 6. Drain. Without any replacement the node keeps its pods until AWS interrupts it or an operator says so.
  let fate: InstanceFate | undefined;
  let drained = false;
  const spotAnswered = (): boolean => status.spot.desiredTarget !== undefined || status.spot.failure !== undefined || capacitySettled;
  if (status.replacement === 'capacity-unavailable' && !drainRequested()) {
    enterPhase('holding');
    note('no replacement capacity: node tainted, pods stay until an interruption notice or a drainNow signal');
    const watched = await watchKeptInstance(drainRequested, status.spot.desiredTarget !== undefined);
    if (watched === 'drain-requested') drained = await drain();
    else fate = watched;
  } else {
    drained = await drain();
  }

  // 7. Keep the books: the spot group was raised by one for this instance. A drained instance is terminated at once,
  //    before AWS's two-minute deadline, while the capacity steps may still go on; runs recorded before that waited
  //    for the capacity steps first.
  if (patched('retire-right-after-drain')) {
    fate = await keepBooks(fate, drained);
    await capacity;
  } else {
    await capacity;
    fate = await keepBooks(fate, drained);
  }
  status.instanceFate = fate;
  enterPhase('done');

  return {
    instanceId,
    nodeName,
    replacement: status.replacement ?? 'capacity-unavailable',
    replacementInstanceId: status.replacementInstanceId,
    tainted: status.taintedAt !== undefined,
    drained,
    instanceFate: fate,
    notes: status.notes,
  };

  // --- steps -------------------------------------------------------------------------------------------------

  async function keepBooks(known: InstanceFate | undefined, wasDrained: boolean): Promise<InstanceFate> {
    if (known) return known;
    if (status.replacement === 'not-requested') return 'kept'; // nothing was added for it: no books to keep
    // Whether the group was raised decides whether it must come down with the instance.
    await condition(spotAnswered);
    const decrement = status.spot.desiredTarget !== undefined;
    if (wasDrained && settings.terminateDrainedInstance) {
      enterPhase('retiring-instance');
      return retireDrainedInstance(decrement);
    }
    enterPhase('awaiting-reclaim');
    if (!wasDrained) note('drain incomplete: the instance is kept until AWS takes it');
    const watched = await watchKeptInstance(() => false, decrement);
    return watched === 'drain-requested' ? 'kept' : watched;
  }

  /** Terminates the drained instance through the capacity workflow, trying again (with a new request id) on failure. */
  async function retireDrainedInstance(decrement: boolean): Promise<InstanceFate> {
    for (let attempt = 1; attempt <= MAX_RETIRE_ATTEMPTS; attempt++) {
      try {
        const retired = await askForRetirement({
          requestId: attempt === 1 ? `${workflowId}/retire` : `${workflowId}/retire/${attempt}`,
          instanceId,
          terminate: true,
          decrement,
        });
        return retired.status === 'terminated' ? 'terminated' : 'reclaimed-by-aws';
      } catch (error) {
        note(`could not retire ${instanceId} (attempt ${attempt}): ${rootMessage(error)}`);
        await sleep(Math.min(attempt * 30_000, 300_000));
      }
    }
    note(`gave up retiring ${instanceId} after ${MAX_RETIRE_ATTEMPTS} attempts: terminate it by hand`);
    return 'kept';
  }

  /**
   * Asks the spot group's capacity workflow to retire (or look at) this instance. Since 'signalled-retirements' the
   * request goes by signal and the answer comes by signal: a wave sends hundreds of looks at once, far more than the
   * Updates Temporal admits in flight per workflow.
   */
  async function askForRetirement(request: Omit<RetireInstanceRequest, 'replyTo'>): Promise<RetireInstanceResult> {
    const signalled = patched('signalled-retirements');
    // Since 'local-retirement-request' the signalled request is sent by a local activity, inside the workflow task that
    // reached it: as an activity it took three events and a workflow task of its own, per node in a wave.
    const send = signalled && patched('local-retirement-request') ? localSteps.requestInstanceRetirement : requestInstanceRetirement;
    const sent = await send({ asgName: settings.spotAsgName, ...request, ...(signalled ? { replyTo: workflowId } : {}) });
    if (sent.status !== 'queued') return sent;
    const { requestId } = request;
    await condition(() => retirementAnswers[requestId] !== undefined, ANSWER_BACKSTOP_MS);
    const answer = retirementAnswers[requestId];
    if (!answer) {
      throw ApplicationFailure.retryable(`capacity workflow of "${settings.spotAsgName}" did not answer ${requestId} within ${ANSWER_BACKSTOP_MS / 1000} s`);
    }
    if (answer.status === 'failed') throw ApplicationFailure.retryable(answer.message, 'CapacityRequestFailed');
    return answer;
  }

  async function addReplacementCapacity(): Promise<void> {
    if (!settings.addReplacementCapacity) {
      status.replacement = 'not-requested';
      note('Spot Guard is disabled (ENABLE_SPOT_GUARD=false): no replacement capacity, taint and drain only');
      enterCapacityPhase('done');
      return;
    }
    const spot = await scaleOut(status.spot, 'spot', settings.capacityCheckTimeoutSeconds);
    if (spot) {
      settleReplacement('spot', spot);
    } else {
      note(`spot capacity unavailable (${status.spot.failure}); falling back to on-demand group ${settings.onDemandAsgName}`);
      status.onDemand = { asgName: settings.onDemandAsgName };
      const onDemand = await scaleOut(status.onDemand, 'on-demand', settings.scaleTimeoutSeconds);
      if (onDemand) {
        settleReplacement('on-demand', onDemand);
        // Runs recorded before the revert-to-spot monitor existed did not report their fallback.
        if (patched('report-fallback-to-monitor')) {
          await reportFallbackToMonitor({
            spotAsgName: settings.spotAsgName,
            onDemandAsgName: settings.onDemandAsgName,
            report: {
              onDemandInstanceId: onDemand,
              warnedInstanceId: instanceId,
              warnedNodeName: nodeName,
              launchedAt: status.onDemand.inServiceAt ?? isoNow(),
            },
          });
        }
      } else {
        status.replacement = 'capacity-unavailable';
        note(`on-demand capacity unavailable too (${status.onDemand.failure})`);
      }
    }
    upsertSearchAttributes([{ key: searchAttributes.outcome, value: status.replacement ?? 'capacity-unavailable' }]);
    if (status.replacementInstanceId) await awaitReplacementNodeReady(status.replacementInstanceId);
    enterCapacityPhase('done');
  }

  function settleReplacement(kind: 'spot' | 'on-demand', replacementInstanceId: string): void {
    status.replacement = kind;
    status.replacementInstanceId = replacementInstanceId;
    note(`${kind} replacement ${replacementInstanceId} is InService`);
  }

  /** +1 on the attempt's group, then wait until a new instance is InService, a capacity problem shows, or time runs out. */
  async function scaleOut(attempt: ScaleAttempt, label: 'spot' | 'on-demand', timeoutSeconds: number): Promise<string | undefined> {
    if (settings.naiveCapacity) return naiveScaleOut(attempt, label, timeoutSeconds);
    // Runs recorded before the capacity workflow polled for all waiters polled the group themselves.
    if (patched('group-wide-replacement-wait')) {
      groupWideWait = true;
      return scaleOutThroughGroup(attempt, label, timeoutSeconds);
    }
    enterCapacityPhase(label === 'spot' ? 'scaling-spot' : 'scaling-on-demand');
    let grant;
    try {
      grant = await requestCapacityIncrease({ asgName: attempt.asgName, requestId: `${workflowId}/${label}` });
    } catch (error) {
      attempt.failure = `could not raise the desired capacity: ${rootMessage(error)}`;
      return undefined;
    }
    if (grant.status !== 'granted') {
      // 'queued' only answers requests with a waiter, which this path never sends.
      attempt.failure = grant.status === 'at-max-size' ? `group is at its MaxSize (${grant.maxSize})` : `unexpected answer ${grant.status}`;
      return undefined;
    }
    return pollForNewInstance(attempt, label, grant, timeoutSeconds);
  }

  /**
   * The capacity workflow raises the group (coalescing concurrent requests into one call) and polls it once per
   * interval for every waiting workflow; it signals this one when an instance is InService for it.
   */
  async function scaleOutThroughGroup(attempt: ScaleAttempt, label: 'spot' | 'on-demand', timeoutSeconds: number): Promise<string | undefined> {
    enterCapacityPhase(label === 'spot' ? 'scaling-spot' : 'scaling-on-demand');
    const requestId = `${workflowId}/${label}`;
    // The spot group keeps the disruption budget: its answer about the replacement can carry the drain slot, which saves
    // a request, an answer and a workflow task per node in a wave. Runs recorded before asked for the slot after the taint.
    drainSlotAskedWithReplacement = label === 'spot' && attempt.asgName === settings.spotAsgName && patched('drain-slot-with-replacement');
    let grant;
    try {
      grant = await requestCapacityIncrease({
        asgName: attempt.asgName,
        requestId,
        coalesceSeconds: settings.coalesceWindowSeconds,
        waiter: {
          workflowId,
          waitSeconds: timeoutSeconds,
          pollIntervalSeconds: settings.asgPollIntervalSeconds,
          ...(drainSlotAskedWithReplacement ? { drainSlot: drainSlotRequest(false) } : {}),
        },
      });
    } catch (error) {
      attempt.failure = `could not raise the desired capacity: ${rootMessage(error)}`;
      return undefined;
    }
    if (grant.status === 'queued') {
      // Applied with the others of its coalescing window; the grant comes by signal.
      const answered = await condition(() => capacityAnswers[requestId] !== undefined, ANSWER_BACKSTOP_MS);
      const answer = capacityAnswers[requestId];
      if (!answered || !answer) {
        attempt.failure = `capacity workflow of "${attempt.asgName}" did not apply the increase within ${ANSWER_BACKSTOP_MS / 1000} s`;
        return undefined;
      }
      if (answer.status === 'failed') {
        attempt.failure = `could not raise the desired capacity: ${answer.message}`;
        return undefined;
      }
      grant = answer;
    }
    if (grant.status === 'at-max-size') {
      attempt.failure = `group is at its MaxSize (${grant.maxSize})`;
      return undefined;
    }
    attempt.requestedAt = grant.appliedAt;
    attempt.desiredBefore = grant.desiredBefore;
    attempt.desiredTarget = grant.desiredTarget;

    enterCapacityPhase(label === 'spot' ? 'waiting-for-spot' : 'waiting-for-on-demand');
    // The capacity workflow answers by the deadline; this bound only matters if it was terminated by hand.
    const backstopSeconds = timeoutSeconds + 2 * settings.asgPollIntervalSeconds + 60;
    await condition(() => replacementAnswers[requestId] !== undefined, backstopSeconds * 1000);
    const answer = replacementAnswers[requestId];
    attempt.polls = answer?.polls;
    switch (answer?.status) {
      case 'in-service':
        attempt.instanceId = answer.instanceId;
        attempt.inServiceAt = answer.at;
        if (answer.drainSlot) takeDrainSlotAnswer(answer.drainSlot);
        return answer.instanceId;
      case 'capacity-problem':
        attempt.failure = `capacity problem: ${answer.message}`;
        return undefined;
      case 'timed-out':
        attempt.failure = `no new instance InService within ${timeoutSeconds} s`;
        return undefined;
      default:
        attempt.failure = `capacity workflow of "${attempt.asgName}" did not answer within ${backstopSeconds} s`;
        return undefined;
    }
  }

  /** Benchmark only: the original flow, each workflow reading desired, writing desired+1 and polling on its own. */
  async function naiveScaleOut(attempt: ScaleAttempt, label: 'spot' | 'on-demand', timeoutSeconds: number): Promise<string | undefined> {
    enterCapacityPhase(label === 'spot' ? 'scaling-spot' : 'scaling-on-demand');
    let grant: Grant;
    try {
      const group = await describeGroup({ asgName: attempt.asgName });
      if (group.desiredCapacity >= group.maxSize) {
        attempt.failure = `group is at its MaxSize (${group.maxSize})`;
        return undefined;
      }
      const desiredTarget = group.desiredCapacity + 1;
      const { requestedAt } = await setDesiredCapacity({ asgName: attempt.asgName, desiredCapacity: desiredTarget });
      grant = {
        status: 'granted',
        desiredBefore: group.desiredCapacity,
        desiredTarget,
        instancesBefore: group.instances.map((i) => i.instanceId),
        appliedAt: requestedAt,
      };
    } catch (error) {
      attempt.failure = `could not raise the desired capacity: ${rootMessage(error)}`;
      return undefined;
    }
    return pollForNewInstance(attempt, label, grant, timeoutSeconds);
  }

  /** This workflow's own polls of the group until a new instance is InService (runs before the group-wide wait). */
  async function pollForNewInstance(attempt: ScaleAttempt, label: 'spot' | 'on-demand', grant: Grant, timeoutSeconds: number): Promise<string | undefined> {
    attempt.requestedAt = grant.appliedAt;
    attempt.desiredBefore = grant.desiredBefore;
    attempt.desiredTarget = grant.desiredTarget;

    enterCapacityPhase(label === 'spot' ? 'waiting-for-spot' : 'waiting-for-on-demand');
    const deadline = Date.now() + timeoutSeconds * 1000;
    for (;;) {
      try {
        const progress = await describeScaleOut({
          asgName: attempt.asgName,
          instancesBefore: grant.instancesBefore,
          since: grant.appliedAt,
        });
        const [fresh] = progress.newInService;
        if (fresh) {
          attempt.instanceId = fresh;
          attempt.inServiceAt = isoNow();
          return fresh;
        }
        if (progress.capacityProblem) {
          attempt.failure = `capacity problem: ${progress.capacityProblem.statusCode}: ${progress.capacityProblem.message}`;
          return undefined;
        }
      } catch (error) {
        note(`could not look at ${attempt.asgName} this time: ${rootMessage(error)}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        attempt.failure = `no new instance InService within ${timeoutSeconds} s`;
        return undefined;
      }
      await sleep(Math.min(settings.asgPollIntervalSeconds * 1000, left));
    }
  }

  /** InService is not Ready: the replacement counts once its Kubernetes node is Ready, or when we stop waiting. */
  async function awaitReplacementNodeReady(replacementInstanceId: string): Promise<void> {
    enterCapacityPhase('waiting-for-node-ready');
    const deadline = Date.now() + settings.nodeReadyTimeoutSeconds * 1000;
    let found: NodeLook | undefined;
    if (patched('node-ready-quick-look')) {
      // The replacement's node is usually Ready by the time its answer arrives: a short look as a local activity lets
      // the same workflow task go on to the taint. Only a node still not Ready waits in the activity, which takes
      // another workflow task to come back from; in a wave of 500 those tasks queue behind each other.
      const lookUntil = new Date(Math.min(deadline, Date.now() + NODE_READY_QUICK_LOOK_MS)).toISOString();
      found = await quickNodeReadyLook({ instanceId: replacementInstanceId, deadline: lookUntil }).catch(() => undefined);
      if (!isReady(found) && Date.now() < deadline) found = await awaitNodeReadyActivity(replacementInstanceId, deadline);
    } else if (patched('node-ready-in-one-activity')) {
      // One activity waits and looks each second, instead of a timer, a workflow task and a look every 2 s per
      // workflow, which in a wave of 500 was hundreds of workflow tasks a second.
      found = await awaitNodeReadyActivity(replacementInstanceId, deadline);
    } else {
      found = await pollNodeReady(replacementInstanceId, deadline);
    }
    if (isReady(found)) status.replacementNodeName = found.nodeName;
    else note(`replacement ${replacementInstanceId} has no Ready node after ${settings.nodeReadyTimeoutSeconds} s; going on`);
  }

  function awaitNodeReadyActivity(instanceId: string, deadline: number): Promise<NodeLook | undefined> {
    const { awaitNodeReady } = proxyActivities<SpotGuardActivities>({
      startToCloseTimeout: `${settings.nodeReadyTimeoutSeconds + 30} seconds`,
      scheduleToCloseTimeout: `${settings.nodeReadyTimeoutSeconds + 90} seconds`,
      heartbeatTimeout: '30 seconds',
      retry,
    });
    return awaitNodeReady({ instanceId, deadline: new Date(deadline).toISOString() }).catch(() => undefined);
  }

  /** Before 'node-ready-in-one-activity': a look, then a timer, until Ready or the deadline. */
  async function pollNodeReady(instanceId: string, deadline: number): Promise<NodeLook | undefined> {
    for (;;) {
      const found = await findNodeForInstanceBriefly({ instanceId }).catch(() => undefined);
      const left = deadline - Date.now();
      if ((found?.nodeName && found.ready) || left <= 0) return found;
      // A Kubernetes read, not an Auto Scaling one: runs with the group-wide wait look every 2 s.
      await sleep(Math.min(groupWideWait ? NODE_READY_POLL_MS : settings.asgPollIntervalSeconds * 1000, left));
    }
  }

  /**
   * Waits for a slot of the spot group's disruption budget. An interruption notice or drainNow is never held: the node
   * drains at once (and counts against the budget).
   */
  function drainSlotRequest(bypass: boolean) {
    return {
      requestId: drainSlotRequestId,
      workflowId,
      instanceId,
      nodeName,
      budget: settings.drainBudget,
      leaseSeconds: settings.drainTimeoutSeconds + 300,
      bypass,
    };
  }

  async function acquireDrainSlot(): Promise<void> {
    const bypass = drainRequested();
    const request = { asgName: settings.spotAsgName, ...drainSlotRequest(bypass) };
    // Granted, or queued by the budget, with the replacement's answer: nothing to ask (an interruption notice since
    // asks again, to drain at once).
    const answeredAlready = drainSlotAskedWithReplacement && (drainSlotGranted() || (drainSlotAnswer !== undefined && !bypass));
    // Tainted, and waiting for the budget from the moment it asks (runs recorded before showed it once queued).
    if (!bypass && !drainSlotGranted() && patched('drain-slot-phase-on-request')) enterPhase('awaiting-drain-slot');
    if (!answeredAlready) {
      try {
        await requestDrainSlot(request);
      } catch (error) {
        status.drainSlot = { state: 'bypassed', at: isoNow() };
        note(`disruption budget unavailable, draining without it: ${rootMessage(error)}`);
        return;
      }
    }
    // Asking again now and then refreshes the position and re-queues if the capacity workflow was restarted.
    let shown: DrainSlotAnswer | undefined;
    let askedAt = Date.now();
    for (;;) {
      const fresh = (): boolean => drainSlotAnswer !== shown && drainSlotAnswer?.status === 'queued';
      const waitMs = Math.max(1, askedAt + DRAIN_SLOT_RECHECK_MS - Date.now());
      await condition(() => drainSlotGranted() || drainRequested() || fresh(), waitMs);
      if (drainSlotGranted() || drainRequested()) break;
      if (fresh() && drainSlotAnswer?.status === 'queued') {
        if (!shown) {
          note(`queued by the disruption budget (${describeDrainBudget(settings.drainBudget)}, ${drainSlotAnswer.limit} at once): position ${drainSlotAnswer.position}`);
        }
        shown = drainSlotAnswer;
        enterPhase('awaiting-drain-slot');
        status.drainSlot = { state: 'queued', position: drainSlotAnswer.position, at: isoNow() };
        continue;
      }
      await requestDrainSlot(request).catch(() => undefined);
      askedAt = Date.now();
    }
    status.drainSlot = { state: drainSlotGranted() && !bypass ? 'granted' : 'bypassed', at: isoNow() };
    if (!drainSlotGranted()) note('interruption notice or drainNow while queued: draining at once');
  }

  async function releaseDrainSlot(): Promise<void> {
    try {
      // Since 'release-drain-slot-locally' a local activity sends the signal, inside the workflow task that finished the
      // drain. A signal command took two more events and one more workflow task of its own, per node in a wave.
      if (patched('release-drain-slot-locally')) {
        await localSteps.giveBackDrainSlot({ asgName: settings.spotAsgName, requestId: drainSlotRequestId });
      } else {
        await getExternalWorkflowHandle(capacityWorkflowId(settings.spotAsgName)).signal(releaseDrainSlotSignal, { requestId: drainSlotRequestId });
      }
    } catch (error) {
      // Its lease frees the slot anyway.
      note(`could not release the drain slot: ${rootMessage(error)}`);
    }
  }

  async function drain(): Promise<boolean> {
    // Runs recorded before the disruption budget drained at once.
    const budgeted = patched('drain-budget');
    if (budgeted) await acquireDrainSlot();
    try {
      return await drainNode();
    } finally {
      if (budgeted) await releaseDrainSlot();
    }
  }

  async function drainNode(): Promise<boolean> {
    enterPhase('draining');
    const cordoned = await cordonNode({ nodeName });
    if (cordoned.nodeGone) {
      note(`node ${nodeName} is gone from Kubernetes: nothing left to drain`);
      return true;
    }
    const deadline = new Date(Date.now() + settings.drainTimeoutSeconds * 1000).toISOString();
    try {
      const report = await evictPodsActivity(settings)({ nodeName, deadline });
      status.drain = { ...report, finishedAt: isoNow() };
      if (!report.complete) note(`drain stopped at its timeout with ${report.remaining.length} pod(s) left: ${report.remaining.join(', ')}`);
      return report.complete;
    } catch (error) {
      note(`drain failed: ${rootMessage(error)}`);
      return false;
    }
  }

  /**
   * Watches a kept instance (tainted, not terminated by us) until AWS takes it, the stop condition holds, or the
   * reclaim wait ends. When AWS takes it, the capacity workflow lowers desired back by the one instance added for it.
   */
  async function watchKeptInstance(stop: () => boolean, decrement: boolean): Promise<InstanceFate | 'drain-requested'> {
    const deadline = Date.now() + settings.reclaimWaitSeconds * 1000;
    for (let look = 1; ; look++) {
      try {
        const answer = await askForRetirement({
          requestId: `${workflowId}/watch/${look}`,
          instanceId,
          terminate: false,
          decrement,
        });
        if (answer.status !== 'still-running') return answer.status === 'terminated' ? 'terminated' : 'reclaimed-by-aws';
      } catch (error) {
        note(`could not look whether ${instanceId} is still running: ${rootMessage(error)}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) return 'kept';
      if (await condition(stop, Math.min(settings.reclaimPollSeconds * 1000, left))) return 'drain-requested';
    }
  }
}

/**
 * The drain's activity options depend on the drain timeout, which comes from the settings. No attempt limit: the
 * absolute deadline in the input already bounds the drain, whatever happens to the worker or the API meanwhile.
 */
function evictPodsActivity(settings: FlowSettings) {
  return proxyActivities<SpotGuardActivities>({
    startToCloseTimeout: `${settings.drainTimeoutSeconds + 60} seconds`,
    scheduleToCloseTimeout: `${settings.drainTimeoutSeconds + 300} seconds`,
    heartbeatTimeout: '30 seconds',
    retry,
  }).evictPods;
}

/** The answers arriving on a signal, by request id; the first one counts (a resent answer changes nothing). */
function answersOf<A extends { requestId: string }>(signal: SignalDefinition<[A]>): Record<string, A> {
  const answers: Record<string, A> = {};
  setHandler(signal, (answer) => {
    answers[answer.requestId] ??= answer;
  });
  return answers;
}

const MAX_RETIRE_ATTEMPTS = 20;
const DRAIN_SLOT_RECHECK_MS = 60_000;
const NODE_READY_POLL_MS = 2_000;
/**
 * The capacity workflow applies a request within its window plus a few AWS calls; retried calls may take minutes, and
 * it answers a failure after 10. This bound only matters if it was terminated by hand.
 */
const ANSWER_BACKSTOP_MS = 15 * 60_000;

const isReady = (look: NodeLook | undefined): look is NodeLook & { nodeName: string } => look?.nodeName !== undefined && look.ready;

function requireValidInput(input: RebalanceInput): void {
  const problems: string[] = [];
  if (typeof input?.instanceId !== 'string' || !INSTANCE_ID_PATTERN.test(input.instanceId)) {
    problems.push(`instanceId "${input?.instanceId}" is not an EC2 instance id (expected i- and 8 or 17 hex digits)`);
  }
  if (typeof input?.nodeName !== 'string' || input.nodeName.length > 253 || !NODE_NAME_PATTERN.test(input.nodeName)) {
    problems.push(`nodeName "${input?.nodeName}" is not a Kubernetes node name (a lowercase DNS subdomain)`);
  }
  if (problems.length > 0) throw ApplicationFailure.nonRetryable(problems.join('; '), 'InvalidInput');
}
