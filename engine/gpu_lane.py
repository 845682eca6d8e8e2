"""The one thread that owns the GPU, and how a short job (a draw) gets in while a long one (a training) runs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class GpuLane:
    """Runs GPU work one item at a time on a single thread.

    A long item (training, class images) receives a `pause_point` callable and calls it at every step boundary.
    Short items submitted meanwhile wait in a list instead of behind the long item, and run inside the next
    pause point — so a draw waits at most one training step, not the whole training. Whatever is still waiting
    when the long item ends runs right after it, on the same thread, before anything else.
    """

    def __init__(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpu")
        self._lock = threading.Lock()
        self._long_running = False
        self._waiting: list[tuple[Callable[[], Any], concurrent.futures.Future]] = []

    @property
    def has_waiting(self) -> bool:
        return bool(self._waiting)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A short item: now if the GPU is idle, else at the running long item's next pause point."""
        call = functools.partial(fn, *args, **kwargs)
        with self._lock:
            if self._long_running:
                future: concurrent.futures.Future = concurrent.futures.Future()
                self._waiting.append((call, future))
            else:
                future = self._executor.submit(call)
        return await asyncio.wrap_future(future)

    async def run_long(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A long item; `fn` is called with `pause_point=` and must call it between its steps."""

        def long_item() -> T:
            with self._lock:
                self._long_running = True
            try:
                return fn(*args, pause_point=self.pause_point, **kwargs)
            finally:
                with self._lock:
                    self._long_running = False
                    leftovers, self._waiting = self._waiting, []
                for call, future in leftovers:
                    _settle(call, future)

        return await asyncio.wrap_future(self._executor.submit(long_item))

    def pause_point(self) -> None:
        """Called by the long item on the GPU thread: run every short item waiting now."""
        if not self._waiting:  # the common case costs one attribute read per training step
            return
        with self._lock:
            items, self._waiting = self._waiting, []
        for call, future in items:
            _settle(call, future)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)


def _settle(call: Callable[[], Any], future: concurrent.futures.Future) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(call())
    except BaseException as exc:  # the awaiting coroutine re-raises it
        future.set_exception(exc)
