"""Running a test's coroutine from a synchronous test."""

import asyncio
from concurrent.futures import ThreadPoolExecutor


def run_async(coro):
    """``asyncio.run`` in a thread of its own.

    The browser tests' Playwright (its sync API) keeps an event loop running in the main
    thread for the rest of the session, and ``asyncio.run`` refuses to start inside a running loop.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-asyncio") as pool:
        return pool.submit(asyncio.run, coro).result()
