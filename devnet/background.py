"""Run a devnet from synchronous code (pytest fixtures, scripts) in a helper thread.

    with BackgroundDevnet(state_dir=tmp, keeper=False) as net:
        ...  # net is the running Devnet; its data is plain, refresh_feeds() works
             # from any event loop

The thread owns an event loop that runs `Devnet.start` until the block exits; exiting
stops every anvil (the same cleanup as the async API) and re-raises start-up errors.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from pathlib import Path
from types import TracebackType

from devnet.errors import DevnetError
from devnet.net import Devnet

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


class BackgroundDevnet:
    def __init__(
        self,
        *,
        state_dir: str | Path | None = None,
        seed: int | None = None,
        keeper: bool = True,
        keeper_interval_s: float | None = None,
    ) -> None:
        self._start = functools.partial(
            Devnet.start,
            state_dir=state_dir,
            seed=seed,
            keeper=keeper,
            keeper_interval_s=keeper_interval_s,
        )
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="devnet", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._net: Devnet | None = None
        self._error: Exception | None = None

    def __enter__(self) -> Devnet:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            self._request_stop()
            raise DevnetError(f"devnet not ready after {START_TIMEOUT_S} s")
        if self._error is not None or self._net is None:
            self._thread.join(STOP_TIMEOUT_S)
            raise DevnetError(f"devnet failed to start: {self._error}") from self._error
        return self._net

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._request_stop()
        self._thread.join(STOP_TIMEOUT_S)
        if self._thread.is_alive():
            raise DevnetError("devnet thread did not stop")
        if self._error is not None and exc is None:
            raise DevnetError(f"devnet failed while stopping: {self._error}") from self._error

    def _request_stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with self._start() as net:
                self._net = net
                self._ready.set()
                await self._stop.wait()
        except Exception as exc:  # handed over to the caller's thread
            self._error = exc
        finally:
            self._ready.set()
