"""A real headless browser for page tests: Debian's ``chromium`` driven through its
``chromium-driver`` by Selenium (``./run test`` installs both with apt; nothing is
downloaded), and a PNG reader to check screenshots with the standard library alone."""

from __future__ import annotations

import shutil
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[WebDriver]:
    """A headless Chromium with a ``width`` x ``height`` window (CSS pixels), quit on exit."""
    binary = shutil.which("chromium")
    driver_binary = shutil.which("chromedriver")
    assert binary and driver_binary, (
        "chromium and chromedriver are missing: `./run test` installs Debian's chromium and "
        "chromium-driver packages"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--force-device-scale-factor=1",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_binary))
    try:
        yield driver
    finally:
        driver.quit()


@dataclass(frozen=True)
class Png:
    width: int
    height: int
    #: the distinct byte values of the decompressed image data (a blank image has few)
    distinct_bytes: int


def read_png(data: bytes) -> Png:
    """The size of a PNG and how varied its pixels are; AssertionError if it is not a
    well-formed PNG (signature, IHDR first, IDAT data that decompresses to the size the
    header announces)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    offset = 8
    chunks: list[tuple[bytes, bytes]] = []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in chunk {kind!r}"
        chunks.append((kind, body))
        offset += 12 + length
    assert chunks and chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, color = struct.unpack(">IIBB", chunks[0][1][:10])
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color]
    pixels = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert depth == 8 and len(pixels) == height * (1 + width * channels), "truncated image"
    return Png(width, height, len(set(pixels)))
