"""The run context: everything a step may use to talk to AWS, and nothing that prints.

Clients come from here (never from module globals) so that the sandbox, moto and the tests'
strict fixture intercept them all the same way. The context also carries the run's clock:
the poll interval, the timeouts table, and the cancel flag that makes Ctrl-C stop every worker
at its next AWS call or wait.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from provisioner import __version__
from provisioner.engine.errors import AwsFailure, ForeignResource, Interrupted
from provisioner.engine.resource import (FIRST_VALUE_TAGS, TAG_CREATED_AT, TAG_EXPIRES_AT, TAG_OWNER,  # noqa: F401
                                         TAG_ROSTER, TAG_STACK, TAG_STEP, TAG_STUDENT, Resource)
from provisioner.engine.retries import BOTOCORE_RETRIES, TIMEOUTS, WAIT_AND_RETRY, error_code, error_message
from provisioner.engine.state import utc_now

if TYPE_CHECKING:
    from provisioner.shape.config import StackConfig

# Read-only operations by name (the constant's name is historical: these are the ones that do not
# mutate). CodeBuild and ECR read by batches: BatchGetProjects, BatchGetBuilds, BatchGetImage.
MUTATING_PREFIXES = ("Describe", "Get", "List", "Head", "Lookup", "BatchGet")


class ReadOnlyViolation(RuntimeError):
    """A mutating AWS call from plan, status or discovery: a bug, never an expected failure."""


def is_mutating(operation: str) -> bool:
    return not operation.startswith(MUTATING_PREFIXES)


class Reporter:
    """Where the engine and the context send what happens; the CLI's rich display implements
    it. The default swallows everything (library use, tests)."""

    def step(self, name: str, state: str, detail: str = "") -> None: ...
    def call(self, step: str | None, service: str, operation: str, status: str, seconds: float) -> None: ...
    def warn(self, message: str) -> None: ...


CLIENT_CREATION_LOCK = threading.Lock()


def _without_account_host(request, **_):
    import re

    # Only an IP address host with a 12-digit label before it (the sandbox's own endpoint).
    request.url = re.sub(r"^(https?://)\d{12}\.(\d{1,3}(?:\.\d{1,3}){3})", r"\1\2", request.url)


class RunContext:
    def __init__(self, *, stack: str, region: str, config: "StackConfig", profile: str | None = None,
                 endpoint_url: str | None = None, credentials: dict | None = None,
                 poll_interval: float = 5.0, timeout_scale: float = 1.0,
                 reporter: Reporter | None = None, session_factory: Callable[[], Any] | None = None,
                 generation: str | None = None):
        self.stack = stack
        self.region = region
        self.config = config
        self.profile = profile
        self.endpoint_url = endpoint_url
        self.credentials = credentials
        self.poll_interval = poll_interval
        self.timeout_scale = timeout_scale
        self.reporter = reporter or Reporter()
        self.generation = generation or utc_now()
        # When this run began (UTC): a resource AWS reports as created before it, in answer to
        # a create, is a former one that an idempotency token replayed.
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.account: str | None = None
        self.owner: str | None = None   # the caller's ARN, stamped on what this run creates
        self.cancel = threading.Event()
        # Every API call made in this run, as (service, operation): the benchmark and the tests
        # read it to prove that a no-op `up` changes nothing.
        self.calls: list[tuple[str, str]] = []
        self.resources: dict[str, Resource] = {}
        # Set by the engine for plan, status and discovery: any mutating call then is a bug.
        self.read_only = False
        self._session_factory = session_factory
        self._session = None
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        # The stack's SSH key and known hosts (provisioner.commands.keys.KeyStore), set by commands that
        # have a state directory; the key pair step keeps its private half there.
        self.keys = None
        # A rate limiter shared by every stack of a fleet (provisioner.commands.fleet.RateLimiter): each
        # HTTP attempt takes a token, and a throttled answer slows every stack down.
        self.limiter = None

    # -- clients -------------------------------------------------------------------------------
    @property
    def session(self):
        with self._lock:
            if self._session is None:
                if self._session_factory is not None:
                    self._session = self._session_factory()
                else:
                    import boto3

                    kwargs: dict[str, Any] = {"region_name": self.region}
                    if self.credentials:
                        kwargs.update(self.credentials)
                    elif self.profile:
                        kwargs["profile_name"] = self.profile
                    self._session = boto3.session.Session(**kwargs)
            return self._session

    def client(self, service: str, region: str | None = None):
        """The run's client of a service, in the stack's region or in `region` (a CloudFront
        certificate must live in us-east-1), with the run's hooks, retries and rate limit."""
        session = self.session
        key = service if region in (None, self.region) else f"{service}@{region}"
        # boto3 sessions are not thread-safe for client creation; the clients themselves are.
        # One lock for every context: contexts of several regions may share a session (and
        # with it botocore's loaded service models, the slow part of making a client).
        with CLIENT_CREATION_LOCK:
            if key not in self._clients:
                from botocore.config import Config

                config = Config(retries=dict(BOTOCORE_RETRIES), max_pool_connections=16,
                                connect_timeout=10, read_timeout=60,
                                user_agent_extra=f"provision/{__version__}")
                kwargs: dict[str, Any] = {"region_name": region or self.region, "config": config}
                if self.endpoint_url:
                    kwargs["endpoint_url"] = self.endpoint_url
                client = session.client(service, **kwargs)
                client.meta.events.register("before-call", self._before_call)
                if self.endpoint_url and service == "s3control":
                    # S3 Control's endpoint rules put the account id in the host name
                    # (<account>.<endpoint>), which an emulator on 127.0.0.1 cannot be reached at.
                    client.meta.events.register("before-send", _without_account_host)
                client.meta.events.register("after-call", self._after_call)
                if self.limiter is not None:
                    # Per HTTP attempt, botocore's own retries included: a retried throttled
                    # call waits for a token like any other.
                    client.meta.events.register("before-send", self._take_token)
                    client.meta.events.register("needs-retry", self._saw_response)
                self._clients[key] = client
            return self._clients[key]

    @property
    def ec2(self):
        return self.client("ec2")

    def iam_action(self, operation: str) -> str:
        """The IAM action of an API operation, as a policy names it (e.g. ec2:CreateVpc)."""
        with self._lock:
            clients = list(self._clients.values())
        for client in clients:
            model = client.meta.service_model
            if operation in model.operation_names:
                return f"{model.signing_name}:{operation}"
        return operation

    def _before_call(self, model, context, **_):
        if self.cancel.is_set():
            raise Interrupted()
        if self.read_only and is_mutating(model.name):
            raise ReadOnlyViolation(f"{model.name} called during a read-only phase")
        self.calls.append((model.service_model.service_name, model.name))
        context["provision_started"] = time.monotonic()

    def _take_token(self, **_):
        self.limiter.acquire(self.cancel)

    def _saw_response(self, response=None, **_):
        if response is not None:
            http, parsed = response
            self.limiter.answered((parsed or {}).get("Error", {}).get("Code"), getattr(http, "status_code", None))

    def _after_call(self, http_response, parsed, model, context, **_):
        seconds = time.monotonic() - context.get("provision_started", time.monotonic())
        code = (parsed or {}).get("Error", {}).get("Code") if isinstance(parsed, dict) else None
        status = code or str(getattr(http_response, "status_code", ""))
        self.reporter.call(self.current_step, model.service_model.service_name, model.name, status, seconds)

    # -- the step being run by this thread -----------------------------------------------------
    @property
    def current_step(self) -> str | None:
        return getattr(self._local, "step", None)

    def bind_step(self, name: str | None) -> None:
        self._local.step = name

    def activity(self, detail: str, state: str = "waiting for AWS") -> None:
        if self.current_step:
            self.reporter.step(self.current_step, state, detail)

    # -- time ----------------------------------------------------------------------------------
    def timeout(self, key: "str | float") -> float:
        """Seconds: a key of the TIMEOUTS table, or a step's own figure; times --timeout-scale."""
        base = key if isinstance(key, (int, float)) else TIMEOUTS.get(key, TIMEOUTS["default"])
        return base * self.timeout_scale

    def sleep(self, seconds: float) -> None:
        """Every wait in the tool sleeps here, so Ctrl-C ends it at once."""
        if self.cancel.wait(seconds):
            raise Interrupted()

    # -- identity and tags ---------------------------------------------------------------------
    def name_tag(self, step: str) -> str:
        return f"{self.stack}-{step}"

    def tags(self, step: str, lasting: bool = False) -> list[dict]:
        """The tool's tags for a resource of `step`. `lasting`: only those that never change,
        for what is stamped once and never converged (a launch template's instance tags)."""
        tags = [
            {"Key": "Name", "Value": self.name_tag(step)},
            {"Key": TAG_STACK, "Value": self.stack},
            {"Key": TAG_STEP, "Value": step},
            {"Key": TAG_CREATED_AT, "Value": utc_now()},
        ]
        if self.owner:
            tags.append({"Key": TAG_OWNER, "Value": self.owner})
        expires_at = getattr(self.config, "expires_at", None)
        if expires_at and not lasting:
            tags.append({"Key": TAG_EXPIRES_AT, "Value": expires_at})
        for key, value in ((TAG_ROSTER, getattr(self.config, "roster", None)),
                           (TAG_STUDENT, getattr(self.config, "student", None))):
            if value:
                tags.append({"Key": key, "Value": value})
        return tags

    def tag_specifications(self, resource_type: str, step: str) -> list[dict]:
        return [{"ResourceType": resource_type, "Tags": self.tags(step)}]

    def tag_filters(self, step: str) -> list[dict]:
        return [{"Name": f"tag:{TAG_STACK}", "Values": [self.stack]},
                {"Name": f"tag:{TAG_STEP}", "Values": [step]}]

    def converge_tags(self, tags: list[dict], step: str, apply: bool, put: Callable[[list[dict]], Any]) -> list[str]:
        """Put back the tool's tags that a resource lacks or has with another value (someone
        edited them: they are how `down` finds things), with `put(missing)` when `apply`; the
        change line for `up` and `plan`. created-at and owner count only when absent: they
        record the creation, never corrected."""
        have = {t["Key"]: t["Value"] for t in tags or []}
        missing = [t for t in self.tags(step)
                   if t["Key"] not in have or (t["Key"] not in FIRST_VALUE_TAGS and have[t["Key"]] != t["Value"])]
        if not missing:
            return []
        if apply:
            put(missing)
        return [f"set tag(s) {', '.join(t['Key'] for t in missing)}"]

    def owns(self, tags: list[dict], step: str) -> bool:
        have = {t["Key"]: t["Value"] for t in tags}
        return have.get(TAG_STACK) == self.stack and have.get(TAG_STEP) == step

    def is_ours(self, tags: list[dict] | None, step: str) -> bool:
        """This stack's tag, and this step's or none (a removed tag, which `up` puts back)."""
        have = {t["Key"]: t["Value"] for t in tags or []}
        return have.get(TAG_STACK) == self.stack and have.get(TAG_STEP, step) == step

    def claim(self, step: str, resource_id: str, tags: list[dict] | None, what: str = "") -> None:
        """A resource found by the id the state file remembers is the stack's only if its tags say
        so: a state file copied from another stack, hand-edited or restored from a backup must
        never make `up` re-tag, or `down` delete, what belongs to someone else.

        This stack's tag with the step's tag missing is ours (someone removed a tag; `up` puts it
        back); another stack's, another step's, or none at all is refused."""
        if self.is_ours(tags, step):
            return
        have = {t["Key"]: t["Value"] for t in tags or []}
        label = f"{what} {resource_id}".strip()
        if have.get(TAG_STACK) == self.stack:
            owner = f"this stack's step {have[TAG_STEP]!r}, not {step!r}"
        elif TAG_STACK in have:
            owner = f"stack {have[TAG_STACK]!r}"
            if have.get(TAG_OWNER):
                owner += f" (created by {have[TAG_OWNER]})"
        else:
            owner = "no stack: it carries none of provision's tags"
        raise ForeignResource(
            f"the state file says {step} is {label}, but {resource_id} belongs to {owner}; "
            f"refusing to adopt, change or delete it",
            hint=f"the state file of stack {self.stack!r} is not this stack's (copied, edited or restored?): "
                 "move it aside and run again, and the stack's own resources are found by their tags")

    def client_token(self, step: str) -> str:
        """Idempotency token for APIs that take one: the same for a retried create within this
        stack generation, different once the stack was deleted and built again."""
        digest = hashlib.sha256(f"{self.stack}:{step}:{self.generation}".encode()).hexdigest()
        return digest[:64]

    def client_tokens(self, step: str, attempts: int = 5):
        """The step's idempotency tokens in order: `client_token(step)` first, each next one
        derived from the last. AWS answers a used token with the resource it made the first time,
        whatever it has become since (deleted by hand, failed); the step then takes the next
        token, so a create after a manual deletion makes a fresh resource, and a retry still
        meets its own, deterministically."""
        token = self.client_token(step)
        for _ in range(attempts):
            yield token
            token = self.client_token(f"{step}:after:{token}")

    def dep(self, step: str) -> Resource | None:
        """The resource of a step this one depends on (None if it does not exist yet: `plan`)."""
        return self.resources.get(step)

    # -- retries and waiters -------------------------------------------------------------------
    def retry(self, case: str, fn: Callable, *args, blocked_by: Callable[[], str] | None = None, **kwargs):
        """Call fn, waiting and retrying while it fails with one of the case's error codes, until
        the case's deadline; then fail naming what still blocks, when `blocked_by` can tell."""
        import tenacity

        rule = WAIT_AND_RETRY[case]

        def before_sleep(retry_state):
            exc = retry_state.outcome.exception()
            self.activity(f"{error_code(exc)}: {rule.why}")

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(rule.matches),
            wait=tenacity.wait_fixed(self.poll_interval),
            stop=tenacity.stop_after_delay(self.timeout(rule.timeout)),
            sleep=self.sleep, before_sleep=before_sleep, reraise=True)
        try:
            return retrying(fn, *args, **kwargs)
        except Exception as e:
            code = error_code(e)
            if not rule.matches(e):
                raise
            blocker = ""
            if blocked_by is not None:
                try:
                    blocker = blocked_by()
                except Exception as probe_error:  # the probe is best effort; the failure is not
                    blocker = f"(could not list what blocks: {probe_error})"
            raise AwsFailure(
                f"{code} for {self.timeout(rule.timeout):.0f}s ({rule.why}): {error_message(e)}"
                + (f"; still in use by: {blocker}" if blocker else ""),
                hint="raise --timeout-scale to wait longer, or remove what blocks and run again",
            ) from e

    def wait(self, service: str, waiter_name: str, *, what: str, timeout: str | float = "default", **params) -> None:
        """Wait with a botocore waiter (or one of ours from waiters.py), polling every
        PROVISION_POLL_INTERVAL seconds up to the timeout table's deadline."""
        from botocore.exceptions import WaiterError

        from provisioner.engine.waiters import custom_waiter, has_custom_waiter

        client = self.client(service)
        waiter = custom_waiter(waiter_name, client) if has_custom_waiter(waiter_name) else client.get_waiter(waiter_name)
        deadline = self.timeout(timeout)
        attempts = max(2, math.ceil(deadline / self.poll_interval) + 1)
        self.activity(what)
        try:
            # Right after a create, AWS may not know the new id yet; several of botocore's
            # waiters (vpc_available, subnet_available) give up at once on that NotFound.
            self.retry("eventual-consistency", waiter.wait,
                       WaiterConfig={"Delay": self.poll_interval, "MaxAttempts": attempts}, **params)
        except WaiterError as e:
            raise AwsFailure(f"gave up waiting for {what} after {deadline:.0f}s: "
                             f"{error_message(e) if error_code(e) else e.kwargs.get('reason')}",
                             hint="raise --timeout-scale to wait longer") from e
