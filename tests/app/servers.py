"""A real uvicorn server on a free 127.0.0.1 port, run in a thread for one test."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

from tests.fixtures.ports import free_port

T = TypeVar("T")


class ServedApp:
    """Handle on a running server: its URL and a way to run coroutines on its loop."""

    def __init__(self, url: str, loop: asyncio.AbstractEventLoop) -> None:
        self.url = url
        self.loop = loop

    def run(self, factory: Callable[[], Awaitable[T]], timeout: float = 30) -> T:
        """Run a coroutine on the server's event loop (where its queues live)."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(factory(), self.loop)  # type: ignore[arg-type]
        return future.result(timeout)


@contextmanager
def serve(app: Any) -> Iterator[ServedApp]:
    """Serve the ASGI `app` with uvicorn until the block ends."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on")
    server = uvicorn.Server(config)
    loops: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        loops.append(asyncio.get_running_loop())
        await server.serve()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.02)
    else:
        raise RuntimeError("uvicorn did not start")
    try:
        yield ServedApp(f"http://127.0.0.1:{port}", loops[0])
    finally:
        server.should_exit = True
        thread.join(10)
