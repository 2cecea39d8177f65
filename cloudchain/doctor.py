"""`cchain --doctor`: the set-up checks, as data. Each check has a name, the checks it needs
to have passed, and a function that returns what it found and, on failure, the fix. The CLI
only prints the results.

A failing check never stops a later one that does not depend on it; one that does is skipped,
naming what it waits for. Nothing is written unless asked (write=True), and then only a probe
secret, which is purged again. The checks are doctor_local.py's (this machine) and
doctor_aws.py's (the table, key and permissions); what they share is doctor_state.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .doctor_aws import check_key, check_permissions, check_replica, check_table, write_steps
from .doctor_due import check_due
from .doctor_local import (
    check_agent,
    check_config,
    check_credentials,
    check_endpoint,
    check_settings,
)
from .doctor_state import FAIL, OK, SKIP, Doctor, Failed, Result, Skipped

__all__ = ["CHECKS", "FAIL", "OK", "SKIP", "Check", "Doctor", "Result", "examine"]


@dataclass(frozen=True)
class Check:
    """One check: its name, the checks it needs, and what it does."""

    name: str
    run: Callable[[Doctor], str]
    needs: tuple[str, ...] = ()


CHECKS: tuple[Check, ...] = (
    Check("config", check_config),
    Check("settings", check_settings, ("config",)),
    Check("credentials", check_credentials, ("settings",)),
    Check("endpoint", check_endpoint, ("settings",)),
    Check("table", check_table, ("credentials", "endpoint")),
    Check("key", check_key, ("credentials", "endpoint")),
    Check("permissions", check_permissions, ("table",)),
    Check("agent", check_agent),
)


def examine(doctor: Doctor, checks: tuple[Check, ...] = CHECKS) -> list[Result]:
    """Run every check in order and return one result each (more with doctor.write)."""
    results: list[Result] = []
    passed: set[str] = set()
    for check in checks:
        waiting = [n for n in check.needs if n not in passed]
        if waiting:
            results.append(Result(check.name, SKIP, f"needs {' and '.join(waiting)} first"))
            continue
        try:
            results.append(Result(check.name, OK, check.run(doctor)))
            passed.add(check.name)
        except Skipped as skipped:
            results.append(Result(check.name, SKIP, str(skipped)))
        except Failed as failed:
            results.append(Result(check.name, FAIL, failed.detail, failed.fix))
            if failed.usable:
                passed.add(check.name)
    replicas = doctor.config.replica_regions if doctor.config and "table" in passed else ()
    home = doctor.clients.region if "settings" in passed and doctor.clients else None
    for region in (r for r in replicas if r != home):  # one line each, after the home table
        try:
            results.append(Result(f"replica {region}", OK, check_replica(doctor, region)))
        except Failed as failed:
            results.append(Result(f"replica {region}", FAIL, failed.detail, failed.fix))
    if doctor.service is not None and "table" in passed:  # asked about one service: its due
        try:
            results.append(Result("due", OK, check_due(doctor)))
        except Failed as failed:
            results.append(Result("due", FAIL, failed.detail, failed.fix))
    if doctor.write:
        if {"permissions", "key"} <= passed:
            results.extend(write_steps(doctor))
        else:
            results.append(Result("write", SKIP, "needs key and permissions first"))
    return results
