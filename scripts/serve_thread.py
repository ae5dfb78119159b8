"""An ASGI app under uvicorn in a thread of this process, on a free loopback port: what the browser tests
(``tests/browser/conftest.py``) and the store benchmark (``benchmarks/store_scale.py``) serve the app with.
The real HTTP stack (parsing, middleware, lifespan), no subprocess to start or clean up."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_in_thread(app, deadline_s: float = 60.0) -> Iterator[str]:
    """Serve ``app`` until the context exits; yields its base URL once uvicorn reports it started."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + deadline_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)  # polling interval of a deadline loop
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
