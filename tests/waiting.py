"""Waiting for a condition in tests, never for a fixed time.

A loaded machine (two cores, six test runs, a CPU hog) makes every step slow,
so a test waits for what it needs to see, bounded generously, and when the
bound passes it fails naming what it awaited. A test that must show
something does NOT happen waits for a later positive signal instead.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: The bound of a wait: far above what any condition needs on a busy machine.
WAIT_SECONDS = 60.0
#: How often a condition is looked at.
INTERVAL_SECONDS = 0.05


def _name(predicate: Callable[[], object], what: str | None) -> str:
    return what or getattr(predicate, "__name__", None) or repr(predicate)


async def eventually(
    predicate: Callable[[], object],
    *,
    timeout: float = WAIT_SECONDS,
    interval: float = INTERVAL_SECONDS,
    what: str | None = None,
) -> Any:
    """Wait until ``predicate()`` (plain or async) is truthy and return its value; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {_name(predicate, what)}, in vain")
        await asyncio.sleep(interval)


def eventually_sync(
    predicate: Callable[[], T],
    *,
    timeout: float = WAIT_SECONDS,
    interval: float = INTERVAL_SECONDS,
    what: str | None = None,
) -> T:
    """:func:`eventually` for code without an event loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {_name(predicate, what)}, in vain")
        time.sleep(interval)


async def within(awaitable: Awaitable[T], *, timeout: float = WAIT_SECONDS, what: str) -> T:
    """Await ``awaitable`` bounded by ``timeout``; fail naming ``what`` if it takes longer."""
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise AssertionError(f"waited {timeout:g} s for {what}, in vain") from None
