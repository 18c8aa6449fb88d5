"""moto in server mode, with the launch behaviour real Auto Scaling has and moto lacks.

moto launches instances at once, never runs out of capacity and records no scaling activities. This launcher patches
moto's Auto Scaling model so tests (and the benchmark) can drive it like AWS:

- capacity errors: launches for a group fail with a real `Failed` scaling activity and AWS's own message text;
- launch delays: new instances stay `Pending` for N seconds before they are `InService`, and count toward desired
  capacity meanwhile, as in AWS;
- scaling activities: every launch and termination is recorded and served by DescribeScalingActivities;
- request counting: Auto Scaling requests are counted by action.

Control endpoint (JSON over HTTP, on the same port as moto):
  POST /_launcher/capacity-error  {"group": "...", "message": "..."}   launches of the group fail from now on
  POST /_launcher/delay           {"group": "...", "seconds": N}       new instances of the group wait N s
  POST /_launcher/restore         {"group": "..."}                     normal launches again; like AWS retrying,
                                                                     the group launches what it is short of
  POST /_launcher/throttle        {"seconds": N}                       every Auto Scaling request gets AWS's
                                                                     Throttling "Rate exceeded" answer for N s
  POST /_launcher/reset                                              moto state, behaviours and counters cleared
  GET  /_launcher/counts                                             {"total": N, "byAction": {...}}
  POST /_launcher/instances       {"group": "..."}                     the group's desired and instances (uncounted)
  GET  /_launcher/timeline                                           requests per second, desired writes, InService times

Usage: python aws_launcher.py --port 5000 [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import threading
import time
import uuid
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

from moto.autoscaling import models as autoscaling_models
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import ActionResult
from moto.moto_api._internal.models import moto_api_backend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

INSUFFICIENT_CAPACITY = (
    "We currently do not have sufficient {instance_type} capacity in the Availability Zone you requested ({zone}). "
    "Our system will be working on provisioning additional capacity. You can currently get {instance_type} capacity "
    "by not specifying an Availability Zone in your request or choosing {others}. Launching EC2 instance failed."
)


class LauncherState:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with getattr(self, "lock", threading.RLock()):
            self.capacity_errors: dict[str, str] = {}
            self.delays: dict[str, float] = {}
            self.activities: dict[str, list[dict[str, Any]]] = {}
            # instance id -> (group name, time it becomes InService, activity)
            self.pending: dict[str, tuple[str, float, dict[str, Any]]] = {}
            self.counts: Counter[str] = Counter()
            self.throttled: Counter[str] = Counter()
            self.throttle_until = 0.0
            # For benchmarks: requests per wall-clock second, desired-capacity writes, when instances went InService.
            self.per_second: Counter[int] = Counter()
            self.desired_log: list[tuple[float, str, int]] = []
            self.in_service_at: dict[str, float] = {}


STATE = LauncherState()


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def record_activity(group: str, description: str, status: str, message: str | None = None) -> dict[str, Any]:
    activity: dict[str, Any] = {
        "ActivityId": str(uuid.uuid4()),
        "AutoScalingGroupName": group,
        "Description": description,
        "Cause": f"At {now().isoformat()} an instance was started in response to a difference between desired and actual capacity.",
        "StartTime": now(),
        "StatusCode": status,
        "Progress": 100 if status in ("Successful", "Failed", "Cancelled") else 30,
    }
    if status in ("Successful", "Failed", "Cancelled"):
        activity["EndTime"] = now()
    if message:
        activity["StatusMessage"] = message
    STATE.activities.setdefault(group, []).append(activity)
    return activity


original_replace = autoscaling_models.FakeAutoScalingGroup.replace_autoscaling_group_instances


def replace_autoscaling_group_instances(self: Any, count_needed: int, propagated_tags: dict[str, str]) -> None:
    with STATE.lock:
        message = STATE.capacity_errors.get(self.name)
        if message is not None:
            zone = (self.availability_zones or ["us-east-1a"])[0]
            text = message or INSUFFICIENT_CAPACITY.format(instance_type=self.instance_type or "m5.large", zone=zone, others="us-east-1b, us-east-1c")
            for _ in range(count_needed):
                record_activity(self.name, "Launching a new EC2 instance.  Status Reason: " + text, "Failed", text)
            return
        before = {state.instance.id for state in self.instance_states}
        original_replace(self, count_needed, propagated_tags)
        delay = STATE.delays.get(self.name, 0)
        for state in self.instance_states:
            if state.instance.id in before:
                continue
            description = f"Launching a new EC2 instance: {state.instance.id}"
            if delay > 0:
                state.lifecycle_state = "Pending"
                activity = record_activity(self.name, description, "InProgress")
                STATE.pending[state.instance.id] = (self.name, time.monotonic() + delay, activity)
                STATE.in_service_at[state.instance.id] = time.time() + delay
            else:
                record_activity(self.name, description, "Successful")
                STATE.in_service_at[state.instance.id] = time.time()


original_terminate = autoscaling_models.AutoScalingBackend.terminate_instance


def terminate_instance(self: Any, instance_id: str, should_decrement: bool) -> Any:
    with STATE.lock:
        group = next(
            (g.name for g in self.autoscaling_groups.values() for s in g.instance_states if s.instance.id == instance_id),
            None,
        )
        result = original_terminate(self, instance_id, should_decrement)
        if group:
            record_activity(group, f"Terminating EC2 instance: {instance_id}", "Successful")
        STATE.pending.pop(instance_id, None)
        return result


def promote_due_instances() -> None:
    """Pending instances whose delay is over become InService, and their launch activity Successful."""
    with STATE.lock:
        due = [iid for iid, (_, at, _) in STATE.pending.items() if at <= time.monotonic()]
        if not due:
            return
        for backend in autoscaling_models.autoscaling_backends.values():
            for regional in backend.values():
                for group in regional.autoscaling_groups.values():
                    for state in group.instance_states:
                        if state.instance.id in due and state.lifecycle_state == "Pending":
                            state.lifecycle_state = "InService"
        for iid in due:
            _, _, activity = STATE.pending.pop(iid)
            activity.update(StatusCode="Successful", Progress=100, EndTime=now())


def relaunch_missing(group_name: str) -> None:
    """What AWS does after failed launches: try again until the group reaches its desired capacity."""
    for backend in autoscaling_models.autoscaling_backends.values():
        for regional in backend.values():
            group = regional.autoscaling_groups.get(group_name)
            if group is None:
                continue
            missing = (group.desired_capacity or 0) - len(group.active_instances())
            if missing > 0:
                group.replace_autoscaling_group_instances(missing, group.get_propagated_tags())


def group_view(group_name: str) -> dict[str, Any]:
    """A group as the test harness sees it, read from moto directly: not an Auto Scaling request, not counted."""
    for backend in autoscaling_models.autoscaling_backends.values():
        for regional in backend.values():
            group = regional.autoscaling_groups.get(group_name)
            if group is not None:
                return {
                    "desired": group.desired_capacity or 0,
                    "instances": [{"id": s.instance.id, "state": s.lifecycle_state} for s in group.instance_states],
                }
    return {"desired": 0, "instances": []}


def active_instances(self: Any) -> list[Any]:
    """The instances that count toward desired capacity. AWS counts launches still Pending as well as InService ones;
    moto counts only InService, so raising desired again while launches were Pending launched them all a second time
    (at 500 nodes, about 2,000 instances more than desired)."""
    return [state for state in self.instance_states if state.lifecycle_state in ("Pending", "InService")]


def describe_scaling_activities(self: AutoScalingResponse) -> ActionResult:
    group = self._get_param("AutoScalingGroupName")
    max_records = int(self._get_param("MaxRecords") or 100)
    with STATE.lock:
        activities = list(reversed(STATE.activities.get(group, [])))[:max_records]
    return ActionResult({"Activities": activities})


autoscaling_models.FakeAutoScalingGroup.replace_autoscaling_group_instances = replace_autoscaling_group_instances
autoscaling_models.AutoScalingBackend.terminate_instance = terminate_instance
autoscaling_models.FakeAutoScalingGroup.active_instances = active_instances
AutoScalingResponse.describe_scaling_activities = describe_scaling_activities


def make_app() -> Any:
    moto_app = DomainDispatcherApplication(create_backend_app)

    def respond(start_response: Any, status: str, payload: Any) -> list[bytes]:
        body = json.dumps(payload).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)

        if path.startswith("/_launcher/"):
            request = json.loads(body or b"{}")
            command = path.removeprefix("/_launcher/")
            with STATE.lock:
                if command == "counts":
                    return respond(start_response, "200 OK", {"total": sum(STATE.counts.values()), "byAction": dict(STATE.counts), "throttled": dict(STATE.throttled)})
                if command == "timeline":
                    return respond(start_response, "200 OK", {
                        "perSecond": {str(k): v for k, v in sorted(STATE.per_second.items())},
                        "desiredLog": STATE.desired_log,
                        "inServiceAt": STATE.in_service_at,
                    })
                if command == "instances":
                    promote_due_instances()
                    return respond(start_response, "200 OK", group_view(request.get("group", "")))
                if command == "reset":
                    moto_api_backend.reset()
                    STATE.reset()
                    return respond(start_response, "200 OK", {"reset": True})
                if command == "throttle":
                    seconds = request.get("seconds")
                    if not isinstance(seconds, (int, float)) or seconds < 0:
                        return respond(start_response, "400 Bad Request", {"error": f"seconds {seconds!r} is not a number >= 0"})
                    STATE.throttle_until = time.monotonic() + float(seconds)
                    return respond(start_response, "200 OK", {"ok": True})
                group = request.get("group")
                if not group:
                    return respond(start_response, "400 Bad Request", {"error": f"{command} needs a \"group\""})
                if command == "capacity-error":
                    STATE.capacity_errors[group] = request.get("message", "")
                elif command == "delay":
                    seconds = request.get("seconds")
                    if not isinstance(seconds, (int, float)) or seconds < 0:
                        return respond(start_response, "400 Bad Request", {"error": f"seconds {seconds!r} is not a number >= 0"})
                    STATE.delays[group] = float(seconds)
                elif command == "restore":
                    STATE.capacity_errors.pop(group, None)
                    STATE.delays.pop(group, None)
                    relaunch_missing(group)
                else:
                    return respond(start_response, "404 Not Found", {"error": f"no launcher command {command!r}"})
                return respond(start_response, "200 OK", {"ok": True})

        action = parse_qs(body.decode("utf-8", "replace")).get("Action", [None])[0]
        if action and "autoscaling" in (environ.get("HTTP_AUTHORIZATION", "") + environ.get("HTTP_HOST", "")):
            with STATE.lock:
                if time.monotonic() < STATE.throttle_until:
                    STATE.throttled[action] += 1
                    error = (
                        '<ErrorResponse xmlns="https://autoscaling.amazonaws.com/doc/2011-01-01/"><Error><Type>Sender</Type>'
                        f"<Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
                    ).encode()
                    start_response("400 Bad Request", [("Content-Type", "text/xml"), ("Content-Length", str(len(error)))])
                    return [error]
                STATE.counts[action] += 1
                STATE.per_second[int(time.time())] += 1
                if action == "SetDesiredCapacity":
                    params = parse_qs(body.decode("utf-8", "replace"))
                    group_name = params.get("AutoScalingGroupName", [""])[0]
                    desired = params.get("DesiredCapacity", ["-1"])[0]
                    STATE.desired_log.append((time.time(), group_name, int(desired)))
        promote_due_instances()
        return moto_app(environ, start_response)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    print(f"aws launcher (moto) listening on http://{args.host}:{args.port}", flush=True)
    run_simple(args.host, args.port, make_app(), threaded=True)


if __name__ == "__main__":
    main()
