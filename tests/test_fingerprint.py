"""advrobust.data.fingerprint: what a resumed run can and cannot tell about a changed input file."""
from __future__ import annotations

import os
import shutil

import numpy as np

from advrobust.data.fingerprint import BLOCK, BLOCKS, file_fingerprint, fingerprint_changes


def _write(path, data: np.ndarray) -> None:
    with open(path, "wb") as handle:
        handle.write(data.tobytes())


def test_same_bytes_same_time_agree_and_a_copy_with_its_time_agrees(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, 10 * BLOCK * BLOCKS, dtype=np.uint8)
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    _write(a, data)
    shutil.copy2(a, b)  # same bytes, same modification time
    assert fingerprint_changes(file_fingerprint(a), file_fingerprint(b)) == []


def test_rewrite_in_place_with_same_length_and_first_block_is_detected(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 255, 10 * BLOCK * BLOCKS, dtype=np.uint8)
    path = tmp_path / "survey.npy"
    _write(path, data)
    before = file_fingerprint(path)
    changed = data.copy()
    changed[BLOCK:] = rng.integers(0, 255, changed.size - BLOCK, dtype=np.uint8)
    _write(path, changed)
    os.utime(path, ns=(before["mtime_ns"], before["mtime_ns"]))  # even with the old time put back
    assert fingerprint_changes(before, file_fingerprint(path)) == ["its content"]


def test_length_and_time_changes_are_named(tmp_path):
    path = tmp_path / "cat.csv"
    path.write_text("a\n1\n")
    before = file_fingerprint(path)
    os.utime(path, ns=(before["mtime_ns"] + 10**9, before["mtime_ns"] + 10**9))
    assert fingerprint_changes(before, file_fingerprint(path)) == ["its modification time"]
    path.write_text("a\n1\n2\n")
    assert "its size" in fingerprint_changes(before, file_fingerprint(path))


def test_small_files_are_hashed_whole(tmp_path):
    path = tmp_path / "small.bin"
    data = np.zeros(3 * BLOCK + 7, np.uint8)
    _write(path, data)
    before = file_fingerprint(path)
    data[-1] = 1  # the very last byte
    _write(path, data)
    os.utime(path, ns=(before["mtime_ns"], before["mtime_ns"]))
    assert fingerprint_changes(before, file_fingerprint(path)) == ["its content"]
