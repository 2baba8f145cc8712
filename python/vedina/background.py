"""One background task of a worker process, started once and stopped cleanly.

>>> task = Background("outbox relay")
>>> task.start(relay_loop)          # a coroutine function, run on the current event loop
>>> await task.stop()               # cancelled and awaited; a no-op if never started
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class Background:
    def __init__(self, name: str) -> None:
        self.name = name
        self._task: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self, run: Callable[[], Awaitable[None]]) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
