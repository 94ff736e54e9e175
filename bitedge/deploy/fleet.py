"""Run the same job on several boards at once; a board that fails fails alone."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from bitedge.deploy.ssh import HostSpec
from bitedge.errors import BitedgeError


@dataclass
class HostOutcome:
    host: str
    ok: bool
    result: object = None
    error: str = ""
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def run_fleet(hosts: list[HostSpec], job: Callable[[HostSpec], object], *, max_parallel: int = 8) -> list[HostOutcome]:
    """job(spec) runs per host in its own thread; its BitedgeError (or any exception) is that host's failure."""

    def one(spec: HostSpec) -> HostOutcome:
        t0 = time.monotonic()
        try:
            return HostOutcome(spec.name, True, job(spec), seconds=time.monotonic() - t0)
        except BitedgeError as e:
            return HostOutcome(spec.name, False, error=str(e), seconds=time.monotonic() - t0)
        except Exception as e:  # a bug or an unexpected library error must not take the fleet down
            return HostOutcome(spec.name, False, error=f"{type(e).__name__}: {e}", seconds=time.monotonic() - t0)

    if not hosts:
        raise BitedgeError("no hosts given")
    with ThreadPoolExecutor(max_workers=max(1, min(max_parallel, len(hosts)))) as pool:
        return list(pool.map(one, hosts))


def summary_line(outcomes: list[HostOutcome]) -> str:
    ok = [o.host for o in outcomes if o.ok]
    bad = [f"{o.host} ({o.error})" for o in outcomes if not o.ok]
    return f"{len(ok)}/{len(outcomes)} hosts succeeded" + (f"; failed: {'; '.join(bad)}" if bad else "")


class FleetFailure(BitedgeError):
    """Some boards failed (their results are stored, the others' are not): exit status 1; all failed: 2."""

    exit_code = 1


def raise_if_failed(outcomes: list[HostOutcome]) -> None:
    if all(o.ok for o in outcomes):
        return
    if not any(o.ok for o in outcomes):
        raise BitedgeError(summary_line(outcomes))
    raise FleetFailure(summary_line(outcomes))
