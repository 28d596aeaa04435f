"""Helpers for the tests that damage sealed torch files (model files, checkpoints) on purpose."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

# A zip local file header: signature, versions, flags, method, time, date, crc, sizes,
# then the name and "extra" lengths (APPNOTE 4.3.7); the data follows name and extra.
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")


def weight_spans(path: Path) -> list[tuple[int, int]]:
    """(first byte, end) in the file of every tensor record ("archive/data/N"), in file order."""
    spans = []
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if "/data/" not in info.filename or info.filename.endswith("serialization_id"):
                continue
            fields = _LOCAL_HEADER.unpack_from(raw, info.header_offset)
            start = info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1]
            spans.append((start, start + info.compress_size))
    return sorted(spans)


def weight_offsets(path: Path) -> dict[str, int]:
    """File offsets of the first, a middle and the last byte of the weights."""
    spans = weight_spans(path)
    middle_start, middle_end = spans[len(spans) // 2]
    return {
        "start": spans[0][0],
        "middle": (middle_start + middle_end) // 2,
        "end": spans[-1][1] - 1,
    }


def flip_byte(source: Path, offset: int, target: Path) -> Path:
    """A copy of ``source`` with the byte at ``offset`` inverted, written to ``target``."""
    data = bytearray(source.read_bytes())
    data[offset] ^= 0xFF
    target.write_bytes(bytes(data))
    return target
