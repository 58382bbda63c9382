"""For the benchmarks: an app served by uvicorn in this process (a daemon thread), on a free loopback port."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager


@contextmanager
def served(app, timeout: float = 60.0):
    """Yield the URL of ``app`` served in a background thread; the server stops when the block ends."""
    import uvicorn

    from tfxai.serve.app import bind_socket

    with bind_socket("127.0.0.1", 0) as sock:
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start within {timeout:.0f} s")
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            server.should_exit = True
            thread.join(10)
