"""Hostile or huge files never hang, exhaust or abort a run: decompression bombs refused before
decoding, the pixel limit, FIFOs and device links, odd file names (issues 13 and 22)."""
from __future__ import annotations

import csv
import os
import struct
import threading
import zlib

import cv2
import numpy as np
import pytest

from cli_helpers import write_xrays
from tfxai.cli import main


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (its pixel data is a stub)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_a_gigapixel_header_is_refused_before_decoding():
    from tfxai.data import decode_bytes

    with pytest.raises(ValueError, match="over the limit|decompression bomb"):
        decode_bytes(_png_header(30000, 30000), "bomb.png")


def test_the_pixel_limit_is_configurable(tmp_path, monkeypatch):
    from tfxai.data import decode_image

    path = write_xrays(tmp_path, 1, size=40)[0]
    assert decode_image(path).shape == (40, 40, 1)
    monkeypatch.setenv("TFXAI_MAX_PIXELS", "1000")
    with pytest.raises(ValueError, match=r"40x40 pixels, over the limit of 1,000"):
        decode_image(path)


def _jpeg_header(width: int, height: int) -> bytes:
    """A real 16 x 16 JPEG whose frame header (SOF0) is rewritten to declare ``width`` x ``height``:
    a valid-looking large X-ray in a few hundred bytes, never decoded here."""
    ok, buf = cv2.imencode(".jpeg", np.full((16, 16), 128, np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_a_valid_image_over_the_limit_names_its_size_the_limit_and_how_to_raise_it(tmp_path, trained_run, capsys):
    """Issue 22: a 15000 x 15000 JPEG (225 Mpx, over Pillow's own 179 Mpx bomb limit) is refused by
    tfxai's limit, whose message says how to raise it; Pillow's limit is left as it was."""
    from PIL import Image

    from tfxai.data import decode_bytes
    from tfxai.data.decode import _raster_size

    big = _jpeg_header(15000, 15000)
    pil_limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ValueError) as err:
        decode_bytes(big, "big.jpeg")
    message = str(err.value)
    assert "15000x15000 pixels" in message and "50,000,000 pixels" in message
    assert "TFXAI_MAX_PIXELS=225000000" in message and "bomb" not in message
    # Pillow's own limit does not stop the header read (tfxai's limit decides), and is restored.
    assert _raster_size(big, "big.jpeg") == (15000, 15000)
    assert Image.MAX_IMAGE_PIXELS == pil_limit
    # The same line reaches the user of `tfxai predict` on a folder.
    inbox = tmp_path / "inbox"
    write_xrays(inbox, 1)
    (inbox / "big.jpeg").write_bytes(big)
    assert main(["predict", "--image", str(inbox), "--checkpoint", trained_run.model_path, "--output",
                 str(tmp_path / "p.csv"), "--no-gradcam", "--no-progress"]) == 0
    assert "15000x15000 pixels, over the limit of 50,000,000 pixels" in capsys.readouterr().out


def test_fifo_and_device_links_are_skipped_not_read(tmp_path, trained_run):
    inbox = tmp_path / "inbox"
    write_xrays(inbox, 2)
    os.mkfifo(inbox / "pipe.jpeg")
    os.symlink("/dev/zero", inbox / "zero.png")
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("code", main(
        ["predict", "--image", str(inbox), "--checkpoint", trained_run.model_path,
         "--output", str(tmp_path / "p.csv"), "--no-gradcam", "--no-progress"])), daemon=True)
    worker.start()
    worker.join(120)
    assert not worker.is_alive(), "predict hung on a FIFO"
    assert result["code"] == 0
    assert len(list(csv.DictReader(open(tmp_path / "p.csv")))) == 2


def test_odd_file_names_never_abort_a_folder_run(tmp_path, trained_run, capsys):
    inbox = tmp_path / "inbox"
    write_xrays(inbox, 2, names=["cost$5$.png", "plain.png"])
    src = os.path.join(str(inbox), "plain.png")
    os.rename(os.fsencode(src), os.fsencode(str(inbox)) + b"/caf\xe9.png")  # not valid UTF-8
    (inbox / "huge.png").write_bytes(_png_header(20000, 20000))
    assert main(["predict", "--image", str(inbox), "--checkpoint", trained_run.model_path,
                 "--output", str(tmp_path / "p.csv"), "--no-progress"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv", encoding="utf-8")))
    assert len(rows) == 2 and any("\\xe9" in r["file"] for r in rows)
    assert "skipped 1 unreadable file(s)" in capsys.readouterr().out
