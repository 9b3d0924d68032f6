"""A cheap fingerprint of an input file, so that a resumed run can tell it is reading the same data.

:func:`file_fingerprint` records the file's size, its modification time (ns) and a SHA-256 of
sampled blocks: the first and last 64 KiB and 62 blocks of 64 KiB evenly spaced between them (4 MiB
read, whatever the file's size; a file under 4 MiB is hashed whole).

What a comparison of two fingerprints detects: any change of length; any rewrite that updates the
modification time (every ordinary write does, even one that restores the same bytes: a resume is
then refused although the data are equal, which is the safe side); any change inside a sampled block.
What it does not detect: a change of equal length outside the sampled blocks whose writer also set
the old modification time back (``touch -d``, ``cp -p`` over the file, some sync tools). A full
hash would, at the cost of reading the whole survey on every start.
"""
from __future__ import annotations

import hashlib
import os

__all__ = ["file_fingerprint", "fingerprint_changes", "describe_change"]

BLOCK = 64 * 1024
BLOCKS = 64


def _offsets(size: int) -> list[int]:
    if size <= BLOCK * BLOCKS:
        return list(range(0, size, BLOCK))
    last = size - BLOCK
    return sorted({round(i * last / (BLOCKS - 1)) for i in range(BLOCKS)})


def file_fingerprint(path: str | os.PathLike) -> dict:
    """``{"size": bytes, "mtime_ns": int, "sampled_sha256": hex}`` of the file ``path`` (see the module
    docstring for what it detects).

    Raises:
        FileNotFoundError: no such file.
    """
    stat = os.stat(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for offset in _offsets(stat.st_size):
            handle.seek(offset)
            digest.update(handle.read(BLOCK))
    return {"size": int(stat.st_size), "mtime_ns": int(stat.st_mtime_ns), "sampled_sha256": digest.hexdigest()}


def fingerprint_changes(before: dict, after: dict) -> list[str]:
    """What differs between two fingerprints of a file, in words (empty when they agree)."""
    words = {"size": "its size", "mtime_ns": "its modification time", "sampled_sha256": "its content"}
    return [words[key] for key in words if before.get(key) != after.get(key)]


def describe_change(key: str, before, after) -> str:
    """One stored setting ``key`` that differs from the new run's, in words: for a fingerprint
    (:func:`file_fingerprint`), what changed in the file; else both values. Used by every resume check
    (the scan's manifest, ``train``'s options file)."""
    if isinstance(before, dict) and isinstance(after, dict) and "sampled_sha256" in before:
        return f"{key}: the file changed since the run started ({', '.join(fingerprint_changes(before, after))})"
    return f"{key}: was {before!r}, now {after!r}"
