"""Chunks of a sequence: the one way nurture splits ids and rows into batches."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["chunked", "map_at_once"]

T = TypeVar("T")
R = TypeVar("R")


def chunked(values: Sequence[T], size: int) -> Iterator[list[T]]:
    """Consecutive slices of ``values`` of at most ``size`` elements, as lists.

    Raises:
        ValueError: ``size`` is less than 1.
    """
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def map_at_once(call: Callable[[T], R], batches: Iterable[T], threads: int) -> Iterator[R]:
    """``call(batch)`` for each batch, ``threads`` calls at a time; the results in batch order.

    With one thread the calls run one after the other in the caller's thread. Otherwise a
    failed call's error is raised when its result is due: the calls not started yet are
    cancelled and those running are waited for first (so is everything when the caller stops
    taking results).

    Raises:
        ValueError: ``threads`` is less than 1.
    """
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if threads == 1:
        yield from map(call, batches)
        return
    executor = ThreadPoolExecutor(threads, thread_name_prefix="nurture-chunk")
    try:
        futures = [executor.submit(call, batch) for batch in batches]
        for future in futures:
            yield future.result()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
