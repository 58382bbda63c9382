"""Helpers for the ``tfxai serve`` tests: uploads (good X-rays at several sizes, and the bad files of
issue 11: empty, truncated, text renamed .png, a 20000 x 20000 PNG header, malformed DICOM, built in
memory), the answers ``tfxai predict`` gives, a running engine, and an app served in a thread."""
from __future__ import annotations

import base64
import struct
import threading
import time
import zlib
from contextlib import contextmanager

import numpy as np

FILE_TYPES = {".png": "image/png", ".jpeg": "image/jpeg", ".jpg": "image/jpeg", ".dcm": "application/dicom"}


def enlarged_png(path: str, height: int, width: int) -> bytes:
    """The image at ``path`` stretched to (height, width), as PNG bytes (a non-square "original")."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    ok, buf = cv2.imencode(".png", cv2.resize(img, (width, height), interpolation=cv2.INTER_CUBIC))
    assert ok
    return buf.tobytes()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` grey pixels, with one tiny compressed row:
    a decompression bomb's shape, without allocating it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def malformed_dicom() -> bytes:
    """A DICOM preamble and magic followed by a broken element stream."""
    return b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff" + b"garbage" * 20


def jpeg_bytes(image: np.ndarray, quality: int = 90) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpeg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def truncated_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    data = jpeg_bytes(rng.integers(0, 255, (300, 260), dtype=np.uint8))
    return data[:len(data) // 2]


def bad_uploads() -> dict[str, tuple[str, bytes, str]]:
    """{case: (file name, bytes, words the error message must contain)} for the issue's bad files."""
    return {
        "empty": ("empty.png", b"", "empty"),
        "truncated": ("cut.jpeg", truncated_jpeg(), "truncated"),
        "text_renamed_png": ("notes.png", b"this is a text file, not an X-ray\n" * 20, "not a readable image"),
        "png_20000x20000": ("huge.png", png_header_only(20000, 20000), "TFXAI_MAX_PIXELS"),
        "png_over_pixel_limit": ("big.png", png_header_only(8000, 8000), "over the limit"),
        "malformed_dicom": ("scan.dcm", malformed_dicom(), "DICOM"),
        "script_name_corrupt": ('<script>alert(1)</script>.png', b"\x89PNG\r\n\x1a\nbroken", "not a readable image"),
    }


def decode_png(text: str) -> np.ndarray:
    """Base64 PNG text -> uint8 array as stored (RGB for colour)."""
    import cv2

    img = cv2.imdecode(np.frombuffer(base64.b64decode(text), np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None, "not a PNG"
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 else img


def expected_predictions(classifier, paths: list[str]) -> dict[str, tuple[str, np.ndarray]]:
    """{file name: (label, probabilities (K,))} from ``tfxai.predict.predict_files``: what the
    server must answer for the same files."""
    from tfxai.predict import predict_files

    preds, skipped = predict_files(classifier, list(paths), gradcam=False, progress=False)
    assert not skipped
    return {p.path.replace("\\", "/").rsplit("/", 1)[-1]: (p.label, p.proba) for p in preds}


@contextmanager
def running_engine(model_path: str):
    """(classifier, engine, explanation jobs) for ``model_path``, warmed up, with test-sized LIME
    and Grad-CAM++ settings; closed on exit."""
    from tfxai.classifier import load_classifier
    from tfxai.serve.engine import Engine, ServeSettings
    from tfxai.serve.jobs import ExplainJobs

    clf = load_classifier(model_path)
    engine = Engine(clf, ServeSettings(lime_samples=40, explain_steps=5)).start()
    engine.warm_up()
    jobs = ExplainJobs(engine)
    try:
        yield clf, engine, jobs
    finally:
        jobs.close()
        engine.close()


class ServerThread:
    """``app`` served by uvicorn in a background thread on a free loopback port.

    ``url`` is set once the server accepts connections; ``stop()`` ends it (bounded wait).
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0, tls: dict | None = None):
        import uvicorn

        from tfxai.serve.app import bind_socket

        self.sock = bind_socket(host, port)
        self.port = self.sock.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", **(tls or {}))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="tfxai-serve-uvicorn", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start within {timeout:.0f} s")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> "ServerThread":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
