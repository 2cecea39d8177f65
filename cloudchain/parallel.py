"""A bounded thread pool for whole-service operations: ordered results, fail-fast."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Callable, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """Return [fn(item) for item in items], run on at most `workers` threads.

    Results keep the input order, so output is deterministic. The first failure cancels every
    call not yet started and is raised once the running ones finish: no partial result.
    """
    if workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(
        max_workers=min(workers, len(items)), thread_name_prefix="cloudchain"
    ) as pool:
        futures = [pool.submit(fn, item) for item in items]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f in done and f.exception() is not None), None)
        if failed is not None:
            for future in futures:
                future.cancel()
            raise failed.exception()  # type: ignore[misc]
        return [future.result() for future in futures]


def retrying(
    fn: Callable[[T], R], on: type[BaseException], rounds: int = 3, base: float = 0.5
) -> Callable[[T], R]:
    """Wrap fn so that an error of type `on` is retried, up to `rounds` calls in all.

    For whole-service operations: botocore already retried each call, but one call still
    failing after that would fail the whole export, so a throttled secret gets more rounds,
    with full-jitter backoff, before it is given up.
    """

    def call(item: T) -> R:
        for attempt in range(rounds):
            try:
                return fn(item)
            except on:
                if attempt == rounds - 1:
                    raise
                time.sleep(random.uniform(0, base * 2**attempt))
        raise AssertionError("unreachable")

    return call
