"""Sealed torch files: what we write carries a sha256 of its contents, checked on every read.

Model files and training checkpoints are ``torch.save`` zip archives of plain values and
tensors. ``torch.load`` checks neither the zip's CRC-32s nor any checksum, so a file damaged on
disk or in a copy could load and silently yield wrong weights. Here every such file is:

- written with a ``checksum`` entry: the sha256 of a canonical walk of everything else in it
  (keys, types, tensor dtypes, shapes and bytes), see :func:`checksum`;
- read by :func:`read_sealed`: the zip's own CRC-32s (``zipfile.testzip``), then
  ``torch.load(weights_only=True)`` (plain values and tensors only: no code), then, by the
  caller once it knows the file is one of ours, :func:`verify`.

Damage raises :class:`DamagedFileError` ("<kind> damaged: <path> (<reason>)"); a file that is
not ours raises :class:`ForeignFileError`. Messages are our own: torch's unpickling errors
recommend ``weights_only=False``, which would run whatever code a file holds, so they are
never passed on.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

CHECKSUM_KEY = "checksum"
_ZIP_MAGIC = b"PK\x03\x04"


class SealedFileError(ValueError):
    """A sealed file could not be used; ``path`` and ``reason`` say which and why."""

    def __init__(self, message: str, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(message)


class DamagedFileError(SealedFileError):
    """The file is one of ours but its bytes changed since it was written."""

    def __init__(self, kind: str, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{kind} damaged: {path} ({reason})", path, reason)


class ForeignFileError(SealedFileError):
    """The file is not one of ours (another format, or objects that are not plain values)."""

    def __init__(self, kind: str, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: not a {kind} ({reason})", path, reason)


def checksum(payload: Mapping[str, Any]) -> str:
    """sha256 (hex) of ``payload`` without its ``checksum`` entry, in a canonical order.

    Equal for a payload and what ``torch.load`` gives back for it: dict keys are sorted,
    tensors contribute dtype, shape and raw bytes (CPU, contiguous), other values their type
    and ``repr`` (exact for floats).
    """
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in payload.items() if k != CHECKSUM_KEY})
    return digest.hexdigest()


def seal(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``payload`` with its :func:`checksum` under ``checksum``."""
    return {**payload, CHECKSUM_KEY: checksum(payload)}


def verify(payload: Mapping[str, Any], path: str | os.PathLike, kind: str) -> None:
    """Raise :class:`DamagedFileError` unless ``payload`` holds its own correct checksum."""
    stored = payload.get(CHECKSUM_KEY)
    if not isinstance(stored, str):
        raise DamagedFileError(kind, path, "no checksum")
    if stored != checksum(payload):
        raise DamagedFileError(kind, path, "checksum mismatch")


def read_sealed(path: str | os.PathLike, kind: str) -> Any:
    """Check the zip of ``path`` and load it with ``torch.load(weights_only=True)`` on the CPU.

    Raises FileNotFoundError when absent, :class:`ForeignFileError` when the file is no torch
    archive or holds objects other than plain values and tensors, :class:`DamagedFileError`
    when its zip structure or a CRC-32 is wrong or its contents cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        if not path.exists():
            raise FileNotFoundError(f"{path}: {kind} not found")
        raise ForeignFileError(kind, path, "not a regular file")
    with path.open("rb") as handle:
        head = handle.read(len(_ZIP_MAGIC))
    if not zipfile.is_zipfile(path):
        if head == _ZIP_MAGIC:  # begins as a zip archive, its directory is unreadable
            raise DamagedFileError(kind, path, "zip structure unreadable")
        raise ForeignFileError(kind, path, "not a PyTorch zip archive")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError):
        raise DamagedFileError(kind, path, "zip structure unreadable") from None
    if bad is not None:
        raise DamagedFileError(kind, path, "zip CRC error")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        if refused_objects(error):
            raise ForeignFileError(kind, path, OBJECTS_REFUSED) from None
        raise DamagedFileError(
            kind, path, f"contents unreadable: {error.__class__.__name__}"
        ) from None


OBJECTS_REFUSED = "it holds Python objects other than tensors and plain values"


def refused_objects(error: BaseException) -> bool:
    """True when ``torch.load(weights_only=True)`` refused a file for the objects it holds.

    Callers report that in their own words (:data:`OBJECTS_REFUSED`), never torch's text,
    which suggests ``weights_only=False``: that would run whatever code the file holds.
    """
    text = str(error)
    return "weights only" in text.lower() or "weights_only" in text


def _feed(digest: Any, value: Any) -> None:
    """Feed ``value`` to ``digest`` with its type, so that 1, 1.0, "1" and [1] all differ."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().to("cpu").contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, Mapping):
        digest.update(f"D{len(value)};".encode())
        for key in sorted(value, key=lambda k: (type(k).__name__, repr(k))):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)};".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"{type(value).__name__}:{value!r};".encode())


__all__ = [
    "CHECKSUM_KEY",
    "OBJECTS_REFUSED",
    "DamagedFileError",
    "ForeignFileError",
    "SealedFileError",
    "checksum",
    "read_sealed",
    "refused_objects",
    "seal",
    "verify",
]
