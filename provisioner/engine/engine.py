"""The step engine: walks the step graph with a bounded pool of workers, so a step starts the
moment its dependencies are done and a slow NAT gateway delays only what needs it.

`up` finds, then creates or converges each step; `plan` and `status` only read; `down` first finds
everything (by the ids in state, then by tags) and then deletes along the reversed graph. The
state file is written by this thread alone, after every step, so an interruption loses at most the
steps in flight, and those carry tags that the next run finds.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from graphlib import TopologicalSorter
from typing import Callable

from provisioner.engine.context import Resource, RunContext
from provisioner.engine.errors import AwsFailure, ForeignResource, Interrupted, ProvisionError
from provisioner.engine.registry import READY_NODE, Step, dependency_graph, has_ready, lookup_graph, up_graph
from provisioner.engine.retries import PERMISSION_CODES, error_code, error_message, hint_for
from provisioner.engine.state import StackState, StateFile

DEFAULT_WORKERS = 8

class Outcome(str, Enum):
    """What a step ended with, per command. A str, so that it prints, compares and serialises as
    its word ("created"); `.ok` and `.changed` say what the callers used to retype."""

    CREATED = "created"
    KEPT = "kept"
    UPDATED = "updated"
    DELETED = "deleted"
    ABSENT = "absent"
    FAILED = "failed"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"
    WILL_CREATE = "create"
    WILL_UPDATE = "update"
    WILL_DELETE = "delete"
    NO_CHANGE = "no change"
    PRESENT = "present"
    MISSING = "missing"

    __str__ = str.__str__
    __format__ = str.__format__

    @property
    def ok(self) -> bool:
        """Done as asked (a plan or a status counts, whatever it found)."""
        return self not in (Outcome.FAILED, Outcome.SKIPPED, Outcome.INTERRUPTED)

    @property
    def changed(self) -> bool:
        """Changed something in AWS."""
        return self in (Outcome.CREATED, Outcome.UPDATED, Outcome.DELETED)


CREATED, KEPT, UPDATED, DELETED, ABSENT = (Outcome.CREATED, Outcome.KEPT, Outcome.UPDATED, Outcome.DELETED,
                                           Outcome.ABSENT)
FAILED, SKIPPED, INTERRUPTED = Outcome.FAILED, Outcome.SKIPPED, Outcome.INTERRUPTED
WILL_CREATE, WILL_UPDATE, WILL_DELETE, NO_CHANGE = (Outcome.WILL_CREATE, Outcome.WILL_UPDATE, Outcome.WILL_DELETE,
                                                    Outcome.NO_CHANGE)
PRESENT, MISSING = Outcome.PRESENT, Outcome.MISSING
DONE_OK = {o for o in Outcome if o.ok}


@dataclass
class StepResult:
    name: str
    outcome: str
    resource_id: str | None = None
    detail: str = ""
    changes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: ProvisionError | None = None
    resources: list[Resource] = field(default_factory=list)

    def __post_init__(self):
        self.outcome = Outcome(self.outcome)

    @property
    def ok(self) -> bool:
        return self.outcome.ok

    @property
    def changed(self) -> bool:
        return self.outcome.changed


def refuse_foreign(results) -> None:
    """Stop the whole command, before it changes anything, when the state names a resource that
    is another stack's (or nobody's): one message for all of them."""
    foreign = [r.error for r in results if isinstance(r.error, ForeignResource)]
    if len(foreign) == 1:
        raise foreign[0]
    if foreign:
        raise ForeignResource(f"{len(foreign)} resources the state file names are not this stack's; nothing "
                              "was changed:\n  " + "\n  ".join(f.message for f in foreign), hint=foreign[0].hint)


@dataclass
class ReadyPhase:
    """The second node of a step with a wait of its own on `up`: until it is in service."""

    step: Step

    @property
    def name(self) -> str:
        return self.step.name


def merge_ready(results: list[StepResult]) -> list[StepResult]:
    """One result per step: a ready phase's time is its step's, and its failure the step's."""
    merged: dict[str, StepResult] = {}
    for result in results:
        first = merged.get(result.name)
        if first is None:
            merged[result.name] = result
            continue
        first.seconds += result.seconds
        if first.ok and not result.ok:
            result.seconds, result.resource_id = first.seconds, result.resource_id or first.resource_id
            merged[result.name] = result
    return list(merged.values())


class Engine:
    def __init__(self, ctx: RunContext, steps: dict[str, Step], state: StackState,
                 state_file: StateFile | None = None, workers: int = DEFAULT_WORKERS,
                 retired: dict[str, Step] | None = None):
        self.ctx = ctx
        self.steps = steps
        # Steps the configuration no longer has (e.g. the second NAT gateway after --single-nat):
        # `up` deletes what the state says they still hold, so nothing is left billing.
        self.retired = {n: s for n, s in (retired or {}).items() if n not in steps and n in state.resources}
        self.state = state
        self.state_file = state_file
        self.workers = workers
        # What `up` found by the ids in state while checking they are the stack's (_check_claims).
        self._claimed: dict[str, Resource] = {}
        # What each step's create-or-converge ended with, for its ready phase.
        self._made: dict[str, StepResult] = {}
        for name, record in state.resources.items():
            if name in steps and record.get("id"):
                ctx.resources[name] = Resource(id=record["id"], attrs=record.get("attrs", {}))

    # -- commands ------------------------------------------------------------------------------
    def up(self) -> list[StepResult]:
        self._check_names()
        self._claimed = self._check_claims({**self.steps, **self.retired})
        self._save()
        # A step that has a wait of its own (a load balancer until active) is two nodes, so
        # that what needs only its creation starts before it is ready.
        nodes: dict[str, Step | ReadyPhase] = dict(self.steps)
        nodes.update({READY_NODE.format(n): ReadyPhase(s) for n, s in self.steps.items() if has_ready(s)})
        results = merge_ready(self._walk(self._up_node, nodes, up_graph(self.steps), active="creating"))
        if self.retired and all(r.ok for r in results):
            results += self._teardown(self.retired)
        self.state.outputs = self._outputs()
        self._save()
        return results

    def plan(self) -> list[StepResult]:
        self._check_names()
        with self._read_only():
            results = self._walk(self._plan_step, self.steps, dependency_graph(self.steps), active="checking",
                                 record=False)
        return results + [StepResult(name, WILL_DELETE, self._known_id(step), detail="no longer configured")
                          for name, step in self.retired.items()]

    def status(self) -> list[StepResult]:
        with self._read_only():
            return self._walk(self._status_step, self.steps, lookup_graph(self.steps), active="checking",
                              record=False)

    def down(self) -> list[StepResult]:
        results = self._teardown(self.steps)
        if self.state_file is not None and all(r.ok for r in results):
            self.state_file.remove()
        return results

    def _teardown(self, steps: dict[str, Step]) -> list[StepResult]:
        """Find everything (state, then tags), then delete along the reversed graph."""
        with self._read_only():
            found = {r.name: r for r in self._walk(self._discover_step, steps, lookup_graph(steps),
                                                     active="finding", record=False)}
        refuse_foreign(found.values())
        return self._walk(lambda step: self._down_step(step, found[step.name]), steps,
                          dependency_graph(steps, reverse=True), active="deleting")

    def _check_names(self) -> None:
        """Before `up` or `plan`: a name the stack would take that something not this stack's
        holds (an untagged bucket of the derived name) stops the run now, not twenty resources in."""
        with self._read_only():
            for step in self.steps.values():
                step.check_name(self.ctx, self._known_id(step))

    def _check_claims(self, steps: dict[str, Step]) -> dict[str, Resource]:
        """Before `up` changes anything: look up every resource the state file names, and stop if
        one of them is not this stack's (a state file copied from another stack must not make
        `up` re-tag its resources). What is found by its remembered id is handed to the step's
        turn in the walk, so this costs no second lookup."""
        claimed = {name: step for name, step in steps.items() if step.tagged and self._known_id(step)}
        if not claimed:
            return {}
        with self._read_only():
            results = self._walk(self._discover_step, claimed, {name: set() for name in claimed},
                                 active="checking", record=False)
        refuse_foreign(results)
        return {r.name: r.resources[0] for r in results
                if r.name in self.steps and r.outcome == PRESENT and len(r.resources) == 1
                and r.resources[0].id == self._known_id(self.steps[r.name])}

    # -- per-step work (runs in worker threads) ------------------------------------------------
    def _known_id(self, step: Step) -> str | None:
        return self.state.resources.get(step.name, {}).get("id")

    def _up_node(self, node) -> StepResult:
        if not isinstance(node, ReadyPhase):
            return self._up_step(node)
        self.ctx.reporter.step(node.name, "waiting until ready")
        node.step.ready(self.ctx, self.ctx.resources[node.name])
        made = self._made[node.name]
        # The step's own outcome again, for the live view (merge_ready keeps the first).
        return StepResult(node.name, made.outcome, made.resource_id, detail=made.detail)

    def _up_step(self, step: Step) -> StepResult:
        result = self._create_or_converge(step)
        self._made[step.name] = result
        return result

    def _create_or_converge(self, step: Step) -> StepResult:
        resource = self._claimed.pop(step.name, None) or step.find(self.ctx, self._known_id(step))
        if resource is None:
            self.ctx.reporter.step(step.name, "creating")
            resource = step.create(self.ctx)
            self.ctx.resources[step.name] = resource
            return StepResult(step.name, CREATED, resource.id, resources=[resource])
        self.ctx.resources[step.name] = resource
        changes = step.update(self.ctx, resource, apply=True)
        return StepResult(step.name, UPDATED if changes else KEPT, resource.id, changes=changes,
                          detail="; ".join(changes), resources=[resource])

    def _plan_step(self, step: Step) -> StepResult:
        resource = step.find(self.ctx, self._known_id(step))
        if resource is None:
            self.ctx.resources.pop(step.name, None)
            return StepResult(step.name, WILL_CREATE)
        self.ctx.resources[step.name] = resource
        changes = step.update(self.ctx, resource, apply=False)
        return StepResult(step.name, WILL_UPDATE if changes else NO_CHANGE, resource.id,
                          changes=changes, detail="; ".join(changes) or step.plan_note(resource))

    def _status_step(self, step: Step) -> StepResult:
        resource = step.find(self.ctx, self._known_id(step))
        if resource is None:
            self.ctx.resources.pop(step.name, None)
            return StepResult(step.name, MISSING)
        self.ctx.resources[step.name] = resource
        return StepResult(step.name, PRESENT, resource.id, detail=step.describe(resource))

    def _discover_step(self, step: Step) -> StepResult:
        found = step.find_all(self.ctx, self._known_id(step))
        if found:
            self.ctx.resources[step.name] = found[0]
        else:
            self.ctx.resources.pop(step.name, None)
        return StepResult(step.name, PRESENT if found else MISSING,
                          ", ".join(r.id for r in found) or None, resources=found)

    def _down_step(self, step: Step, discovered: StepResult) -> StepResult:
        from botocore.exceptions import ClientError

        if discovered.error is not None:
            raise discovered.error
        if not discovered.ok:  # never looked for (what it hangs on could not be found): not "absent"
            raise AwsFailure(f"step {step.name}: could not look for it ({discovered.detail})")
        if not discovered.resources:
            return StepResult(step.name, ABSENT, detail="nothing to delete")
        said = []
        for resource in discovered.resources:
            self.ctx.reporter.step(step.name, "deleting", resource.id)
            try:
                # A delete may say what "deleted" means for its kind (a KMS key only scheduled).
                reason = step.delete(self.ctx, resource)
            except ClientError as e:
                # Deleting what is already gone is success; only this kind's own "not found"
                # says that, never one about a dependency.
                if error_code(e) not in step.gone_codes:
                    raise
                reason = None
            if isinstance(reason, str) and reason:
                said.append(reason)
        return StepResult(step.name, DELETED, discovered.resource_id, detail="; ".join(said))

    # -- the walk ------------------------------------------------------------------------------
    def _run_one(self, fn: Callable[[Step], StepResult], step: Step, active: str) -> StepResult:
        self.ctx.bind_step(step.name)
        self.ctx.reporter.step(step.name, active)
        started = time.monotonic()
        try:
            result = fn(step)
        except Interrupted:
            result = StepResult(step.name, INTERRUPTED)
        except ProvisionError as e:
            result = StepResult(step.name, FAILED, error=e, detail=e.message)
        except Exception as e:  # a ClientError or a connection error: name the step and the code
            result = StepResult(step.name, FAILED, error=self._as_failure(step, e), detail=str(e))
        finally:
            self.ctx.bind_step(None)
        result.seconds = time.monotonic() - started
        if result.error is not None:
            result.detail = result.error.message
        self.ctx.reporter.step(step.name, result.outcome, result.detail or (result.resource_id or ""))
        return result

    def _as_failure(self, step: Step, e: Exception) -> ProvisionError:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(e, ClientError):
            code = error_code(e)
            action = e.operation_name
            if code in PERMISSION_CODES:
                action = self.ctx.iam_action(e.operation_name)
                return AwsFailure(f"step {step.name}: access denied for {action} ({code}): {error_message(e)}",
                                  hint=hint_for(code), code=code)
            return AwsFailure(f"step {step.name}: {action} failed with {code}: {error_message(e)}",
                              hint=hint_for(code), code=code)
        if isinstance(e, BotoCoreError):
            return AwsFailure(f"step {step.name}: {e}",
                              hint="check the network and the endpoint (AWS_ENDPOINT_URL, --sandbox)")
        failure = AwsFailure(f"step {step.name}: internal error {type(e).__name__}: {e}",
                             hint="this is a bug in provision; run with -v for the traceback")
        failure.traceback = traceback.format_exc()
        return failure

    def _walk(self, fn, steps: dict[str, Step], graph: dict[str, set[str]], *, active: str,
              record: bool = True) -> list[StepResult]:
        """Run fn for every step, each as soon as its predecessors in `graph` are done."""
        sorter = TopologicalSorter(graph)
        sorter.prepare()
        results: dict[str, StepResult] = {}
        for name in steps:
            self.ctx.reporter.step(steps[name].name, "waiting")
        pool = cf.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="step")
        running: dict[cf.Future, str] = {}

        def start_ready():
            for name in sorter.get_ready():
                blockers = [steps[d].name for d in graph[name] if not results[d].ok]
                if blockers:
                    why = "interrupted" if self.ctx.cancel.is_set() else f"{blockers[0]} did not finish"
                    results[name] = StepResult(steps[name].name, SKIPPED, detail=f"not started: {why}")
                    self.ctx.reporter.step(steps[name].name, SKIPPED, results[name].detail)
                    sorter.done(name)
                    continue
                running[pool.submit(self._run_one, fn, steps[name], active)] = name

        try:
            while sorter.is_active():
                start_ready()
                if not running:
                    continue
                done, _ = cf.wait(running, timeout=0.5, return_when=cf.FIRST_COMPLETED)
                finished = []
                for future in done:
                    name = running.pop(future)
                    results[name] = future.result()
                    finished.append(results[name])
                    sorter.done(name)
                # Dependents start before the state write, so saving never delays the critical
                # path; a crash in between is covered by the tags.
                start_ready()
                if record:
                    self._record(finished)
        except KeyboardInterrupt:
            # Let every worker stop at its next AWS call or wait, keep what they finished, and
            # save; the steps still in flight are found by their tags next time.
            self.ctx.cancel.set()
            finished = [future.result() for future in cf.as_completed(running)]
            if record:
                self._record(finished)
            raise Interrupted() from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return [results[name] for name in steps if name in results]

    # -- state ---------------------------------------------------------------------------------
    def _record(self, finished: list[StepResult]) -> None:
        """Write what these steps changed to the state file (once for the batch)."""
        changed = False
        for result in finished:
            if result.outcome in (CREATED, KEPT, UPDATED) and result.resources:
                self.state.resources[result.name] = result.resources[0].to_state()
                changed = True
            elif result.outcome in (DELETED, ABSENT) and result.name in self.state.resources:
                del self.state.resources[result.name]
                self.ctx.resources.pop(result.name, None)
                changed = True
        if changed:
            self._save()

    def _save(self) -> None:
        if self.state_file is not None:
            self.state_file.save(self.state)

    def _outputs(self) -> dict:
        out = {"stack": self.ctx.stack, "region": self.ctx.region, "account": self.ctx.account}
        for name, step in self.steps.items():
            resource = self.ctx.resources.get(name)
            if resource is not None:
                out.update(step.outputs(resource))
        return out

    @contextmanager
    def _read_only(self):
        """plan, status and down's discovery may only read; a mutating call there is a bug."""
        self.ctx.read_only = True
        try:
            yield
        finally:
            self.ctx.read_only = False
