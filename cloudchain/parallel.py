"""A bounded pool of threads for whole-service operations: ordered results, fail-fast, and an
interrupt that stops everything at once.

concurrent.futures is not used: its worker threads are joined when the interpreter exits, so a
Ctrl-C would still wait for every call in flight (each up to the read timeout, times the
retries). Here the workers are daemon threads, and a KeyboardInterrupt in the waiting thread
returns at once: no new call starts, and the process can exit without waiting for the calls
already in flight. Those are single AWS requests whose outcome a re-run sorts out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """Return [fn(item) for item in items], run on at most `workers` threads.

    Results keep the input order, so output is deterministic. The first failure stops every
    call not yet started and is raised once the running ones finish: no partial result.
    """
    if workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    results: list[Any] = [None] * len(items)
    failures: list[BaseException] = []
    lock = threading.Lock()
    stop = threading.Event()
    finished = threading.Event()
    pending = iter(range(len(items)))
    running = [min(workers, len(items))]

    def work() -> None:
        try:
            while not stop.is_set():
                with lock:
                    index = next(pending, None)
                if index is None:
                    return
                try:
                    results[index] = fn(items[index])
                except BaseException as err:  # handed to the waiting thread
                    with lock:
                        failures.append(err)
                    stop.set()
        finally:
            with lock:
                running[0] -= 1
                if running[0] == 0:
                    finished.set()

    for n in range(running[0]):
        threading.Thread(target=work, name=f"cloudchain-{n}", daemon=True).start()
    try:
        finished.wait()
    except BaseException:
        stop.set()  # Ctrl-C or SIGTERM: start nothing more, wait for nothing
        raise
    if failures:
        raise failures[0]
    return results
