"""A line chart as a PNG with nothing but zlib and struct (matplotlib is not a dependency; one chart in
``make peak`` does not justify one): axes, tick numbers, a few words in a 3x5 pixel font, one coloured line per
series, drawn at 2x so the font stays readable."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

# 3x5 glyphs, one string of 15 bits per character (rows top to bottom, 3 columns each).
GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111", ".": "000000000000010", " ": "000000000000000",
    "a": "000011101101111", "b": "100100111101111", "c": "000111100100111", "d": "001001111101111",
    "e": "000111111100111", "g": "000111101111001", "i": "010000010010010", "k": "100101110101101",
    "l": "010010010010010", "m": "000111111101101", "n": "000110101101101", "o": "000111101101111",
    "r": "000111100100100", "s": "000011010001110", "t": "010111010010011", "w": "000101101111111",
    "u": "000101101101111", "p": "000111101111100", "h": "100100111101101", "f": "011100110100100",
    "y": "000101101111001", "v": "000101101101010", "(": "001010010010001", ")": "100010010010100", ",": "000000000010100", "x": "000101010101101",
}  # fmt: skip
PALETTE = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]


class Canvas:
    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self.pixels = bytearray(b"\xff" * (width * height * 3))

    def dot(self, x: int, y: int, colour: tuple[int, int, int]) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            at = (y * self.width + x) * 3
            self.pixels[at:at + 3] = bytes(colour)

    def line(self, x0: int, y0: int, x1: int, y1: int, colour, thick: int = 1) -> None:
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for i in range(steps + 1):
            x = round(x0 + (x1 - x0) * i / steps)
            y = round(y0 + (y1 - y0) * i / steps)
            for dx in range(thick):
                for dy in range(thick):
                    self.dot(x + dx, y + dy, colour)

    def text(self, x: int, y: int, words: str, colour=(0, 0, 0), scale: int = 2) -> None:
        for k, char in enumerate(words.lower()):
            bits = GLYPHS.get(char, GLYPHS[" "])
            for row in range(5):
                for col in range(3):
                    if bits[row * 3 + col] == "1":
                        for dx in range(scale):
                            for dy in range(scale):
                                self.dot(x + k * 4 * scale + col * scale + dx, y + row * scale + dy, colour)

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(self.pixels[y * self.width * 3:(y + 1) * self.width * 3])
                       for y in range(self.height))  # fmt: skip

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)  # 8-bit RGB
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def _nice_step(top: float, ticks: int = 5) -> float:
    raw = max(top, 1e-9) / ticks
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000):
        if step >= raw:
            return step
    return raw


def line_chart(series: dict[str, list[tuple[float, float]]], path: Path, *, x_label: str, y_label: str,
               marks: list[tuple[float, str]] = (), width: int = 720, height: int = 400) -> None:
    """``series``: label -> [(x, y)]; ``marks``: vertical grey lines at x with a word (e.g. the burst's start)."""
    canvas = Canvas(width, height)
    left, right, top, bottom = 70, width - 20, 40, height - 50
    xs = [x for points in series.values() for x, _ in points] or [1.0]
    ys = [y for points in series.values() for _, y in points] or [1.0]
    x_step, y_step = _nice_step(max(xs)), _nice_step(max(ys))
    x_max = x_step * max(1, -(-max(xs) // x_step))
    y_max = y_step * max(1, -(-max(ys) // y_step))

    def at(x: float, y: float) -> tuple[int, int]:
        return (round(left + (right - left) * x / x_max), round(bottom - (bottom - top) * y / y_max))

    grey, black = (200, 200, 200), (0, 0, 0)
    tick = 0.0
    while tick <= y_max + 1e-9:
        _, y = at(0, tick)
        canvas.line(left, y, right, y, (235, 235, 235))
        label = f"{tick:g}"
        canvas.text(left - 8 - len(label) * 8, y - 5, label)
        tick += y_step
    tick = 0.0
    while tick <= x_max + 1e-9:
        x, _ = at(tick, 0)
        canvas.line(x, bottom, x, bottom + 4, black)
        label = f"{tick:g}"
        canvas.text(x - len(label) * 4, bottom + 8, label)
        tick += x_step
    for x_value, word in marks:
        x, _ = at(x_value, 0)
        for y in range(top, bottom, 6):
            canvas.line(x, y, x, y + 2, grey)
        canvas.text(x + 4, top + 2, word, (120, 120, 120))
    canvas.line(left, top, left, bottom, black)
    canvas.line(left, bottom, right, bottom, black)
    canvas.text(left + (right - left) // 2 - len(x_label) * 4, height - 20, x_label)
    canvas.text(8, 12, y_label)
    legend_x = right - 160
    for k, (label, points) in enumerate(series.items()):
        colour = PALETTE[k % len(PALETTE)]
        canvas.line(legend_x, top + 8 + k * 16, legend_x + 20, top + 8 + k * 16, colour, thick=3)
        canvas.text(legend_x + 28, top + 4 + k * 16, label)
        for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
            canvas.line(*at(x0, y0), *at(x1, y1), colour, thick=2)
    path.write_bytes(canvas.png())
