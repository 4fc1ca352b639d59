"""The only place that prints: live progress of every step, the summary, status tables, errors.

On a terminal the steps are a live table (rich); elsewhere (CI logs, pipes) each step's changes
of state are plain lines, so logs stay readable.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from provisioner.engine.context import Reporter

STYLES = {
    "waiting": "dim", "checking": "cyan", "finding": "cyan", "creating": "yellow", "deleting": "yellow",
    "waiting for AWS": "magenta", "created": "green", "updated": "green", "kept": "blue",
    "deleted": "green", "absent": "dim", "failed": "bold red", "skipped": "red", "interrupted": "red",
    "create": "green", "update": "yellow", "delete": "red", "no change": "dim", "present": "green", "missing": "red",
    # Instances and targets, after `up` and in `status`.
    "pending": "yellow", "bootstrapping": "magenta", "healthy": "green", "unhealthy": "bold red",
    "terminating": "dim", "terminated": "dim", "initial": "magenta", "draining": "dim", "unused": "dim",
    "unregistered": "dim",
}
# What a plain log (no terminal) shows as it happens: what up and down did, and each wait. Lookups
# (present, missing) and plans are summed up by the table at the end instead.
LINE_STATES = {"created", "updated", "kept", "deleted", "failed", "skipped", "interrupted", "waiting for AWS",
               "pending", "bootstrapping", "healthy", "unhealthy", "terminating", "terminated"}
FINAL = {"created", "updated", "kept", "deleted", "absent", "failed", "skipped", "interrupted",
         "create", "update", "delete", "no change", "present", "missing", "healthy", "terminated"}


def fmt_seconds(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


class ConsoleReporter(Reporter):
    def __init__(self, verbose: bool = False, console: Console | None = None):
        self.console = console or Console(stderr=True, highlight=False)
        # Progress is a courtesy: when its reader goes away (`provision up 2>&1 | head`), rich
        # would end the process, and the run with it. Go quiet instead and let the run finish.
        self.console.on_broken_pipe = lambda: setattr(self.console, "quiet", True)
        self.out = Console(highlight=False)
        self.verbose = verbose
        self.rows: dict[str, dict] = {}
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._live: Live | None = None
        self.title = ""

    # -- Reporter ------------------------------------------------------------------------------
    def step(self, name, state, detail=""):
        with self._lock:
            row = self.rows.setdefault(name, {"state": "waiting", "detail": "", "since": None, "seconds": None})
            changed = False
            if state == "waiting":
                row.update(state=state, detail="", since=None, seconds=None)
            else:
                if row["since"] is None:
                    row["since"] = time.monotonic()
                if state in FINAL:
                    row["seconds"] = time.monotonic() - row["since"]
                changed = (row["state"], row["detail"]) != (state, detail)
                row.update(state=state, detail=detail)
        if self._live is None and changed and state in LINE_STATES:
            elapsed = fmt_seconds(time.monotonic() - self.started)
            self.console.print(Text.assemble(f"[{elapsed:>6}] ", (f"{name:<30}", "bold"), " ",
                                             (f"{state:<16}", STYLES.get(state, "")), " ", detail),
                               soft_wrap=True)

    def call(self, step, service, operation, status, seconds):
        if self.verbose:
            self.console.print(Text(f"    {service}.{operation} -> {status} ({seconds:.2f}s)"
                                    + (f"  [{step}]" if step else ""), style="dim"))

    def warn(self, message):
        self.console.print(Text.assemble(("warning: ", "bold yellow"), message))

    def reset(self) -> None:
        """Start a new table (the instances after the steps)."""
        with self._lock:
            self.rows.clear()

    # -- live table ----------------------------------------------------------------------------
    @contextmanager
    def live(self, title: str):
        """The live table while the steps run (on a terminal), or a title line for plain logs."""
        self.title = title
        self.started = time.monotonic()
        if not self.console.is_terminal:
            self.console.print(Text(title, style="bold"))
            yield
            return
        self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=8)
        try:
            with self._live:
                yield
        finally:
            self._live = None

    def _render(self):
        table = Table(title=f"{self.title}  ({fmt_seconds(time.monotonic() - self.started)})",
                      title_justify="left", box=None, pad_edge=False)
        table.add_column("instance" if self.title.startswith("waiting for") else "step", style="bold", no_wrap=True)
        table.add_column("state", no_wrap=True)
        table.add_column("time", justify="right", no_wrap=True)
        table.add_column("detail", overflow="fold")
        with self._lock:
            rows = list(self.rows.items())
        now = time.monotonic()
        for name, row in rows:
            if row["seconds"] is not None:
                took = fmt_seconds(row["seconds"])
            elif row["since"] is not None:
                took = fmt_seconds(now - row["since"])
            else:
                took = ""
            table.add_row(name, Text(row["state"], style=STYLES.get(row["state"], "")), took, row["detail"])
        return table

    # -- results -------------------------------------------------------------------------------
    def summary(self, results, title: str, total: float) -> None:
        if not results:
            return
        counts: dict[str, int] = {}
        for r in results:
            counts[r.outcome] = counts.get(r.outcome, 0) + 1
        totals = ", ".join(f"{n} {o}" for o, n in counts.items()) + f" in {fmt_seconds(total)}"
        if self.console.is_terminal:
            # The live table above already shows every step's result and time.
            self.out.print(totals)
            return
        table = Table(title=title, title_justify="left")
        table.add_column("step", style="bold")
        table.add_column("result")
        table.add_column("resource")
        table.add_column("time", justify="right")
        for r in results:
            table.add_row(r.name, Text(r.outcome, style=STYLES.get(r.outcome, "")), r.resource_id or "",
                          fmt_seconds(r.seconds))
        self.out.print(table)
        self.out.print(totals)

    def changes(self, results) -> None:
        for r in results:
            for change in r.changes:
                self.out.print(Text.assemble("  ", (r.name, "bold"), ": ", change))
            if not r.changes and r.outcome == "no change" and r.detail:
                # What a step's plan_note says of a resource it uses as it is.
                self.out.print(Text.assemble("  ", (r.name, "bold"), ": ", r.detail))

    def failures(self, results) -> None:
        for r in results:
            if r.error is not None:
                self.error(r.error.message, r.error.hint)
                trace = getattr(r.error, "traceback", None)
                if trace and self.verbose:
                    self.console.print(trace)

    def error(self, message: str, hint: str | None = None) -> None:
        self.console.print(Text.assemble(("error: ", "bold red"), message))
        if hint:
            self.console.print(Text.assemble(("hint: ", "bold"), hint))
