import threading
import time

import pytest

from nurture.chunks import chunked, map_at_once


def test_chunked_covers_every_value_once() -> None:
    assert list(chunked([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]
    assert list(chunked([], 3)) == []
    with pytest.raises(ValueError, match="chunk size"):
        list(chunked([1], 0))


def test_one_thread_calls_in_the_callers_thread_in_order() -> None:
    called_in: list[str] = []

    def call(batch: int) -> int:
        called_in.append(threading.current_thread().name)
        return batch * 10

    assert list(map_at_once(call, [1, 2, 3], 1)) == [10, 20, 30]
    assert called_in == [threading.current_thread().name] * 3
    with pytest.raises(ValueError, match="threads"):
        list(map_at_once(call, [1], 0))


def test_two_threads_run_two_calls_at_once_and_keep_the_batch_order() -> None:
    both_running = threading.Barrier(2, timeout=10)  # breaks unless two calls run at once

    def call(batch: int) -> int:
        if batch < 2:
            both_running.wait()
        time.sleep(0.01 * (5 - batch))  # later batches finish first
        return batch

    assert list(map_at_once(call, range(5), 2)) == [0, 1, 2, 3, 4]


def test_an_error_is_raised_in_order_and_the_calls_not_started_are_cancelled() -> None:
    started: list[int] = []
    failed = threading.Event()

    def call(batch: int) -> int:
        started.append(batch)
        if batch == 1:
            failed.set()
            raise RuntimeError("chunk 1 failed")
        if batch == 0:
            failed.wait(10)
        time.sleep(0.01)
        return batch

    results = map_at_once(call, range(100), 2)
    assert next(results) == 0
    with pytest.raises(RuntimeError, match="chunk 1 failed"):
        next(results)
    assert len(started) < 100
    settled = len(started)
    time.sleep(0.05)
    assert len(started) == settled  # nothing runs after the error is raised


def test_a_caller_that_stops_taking_results_cancels_the_rest() -> None:
    started: list[int] = []

    def call(batch: int) -> int:
        started.append(batch)
        time.sleep(0.01)
        return batch

    results = map_at_once(call, range(100), 2)
    assert next(results) == 0
    results.close()
    settled = len(started)
    time.sleep(0.05)
    assert len(started) == settled < 100
