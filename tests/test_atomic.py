"""advrobust.atomic: a write killed at any moment leaves the old file whole, and its temporary file
is removed by the next write."""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from advrobust.atomic import atomic_path, stale_temporaries


def test_atomic_path_replaces_and_cleans_up(tmp_path):
    target = tmp_path / "a.npz"
    with atomic_path(target) as tmp:
        assert tmp.endswith(".npz") and os.path.dirname(tmp) == str(tmp_path)
        np.savez(tmp, x=np.arange(3))
    assert np.load(target)["x"].tolist() == [0, 1, 2]
    assert os.listdir(tmp_path) == ["a.npz"]


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "a.npz"
    np.savez(target, x=np.arange(3))
    with pytest.raises(ZeroDivisionError):
        with atomic_path(target) as tmp:
            np.savez(tmp, x=np.arange(5))
            1 / 0
    assert np.load(target)["x"].tolist() == [0, 1, 2]
    assert os.listdir(tmp_path) == ["a.npz"]


def test_atomic_path_refuses_empty_write_and_missing_folder(tmp_path):
    with pytest.raises(RuntimeError, match="nothing was written"):
        with atomic_path(tmp_path / "a.npz"):
            pass
    with pytest.raises(FileNotFoundError, match="does not exist"):
        with atomic_path(tmp_path / "no" / "a.npz"):
            pass


_SLOW_WRITER = textwrap.dedent("""
    import sys, time
    from advrobust.atomic import atomic_path
    with atomic_path(sys.argv[1]) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(b"new" * 1000)
            handle.flush()
            print("writing", flush=True)
            time.sleep(60)
""")


def test_sigkill_mid_write_keeps_old_file_and_next_write_removes_the_leftover(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old")
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target)], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert target.read_bytes() == b"old"
    leftovers = stale_temporaries(target)
    assert len(leftovers) == 1 and os.path.getsize(leftovers[0]) == 3000
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(b"newer")
    assert target.read_bytes() == b"newer"
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]


def test_models_save_is_atomic(tmp_path, monkeypatch):
    from advrobust import models
    import advrobust.models.registry as registry

    model = models.create("morphology_small")
    path = tmp_path / "m.safetensors"
    models.save(model, path)
    before = path.read_bytes()

    def failing_save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(registry, "save_file", failing_save_file)
    with pytest.raises(OSError, match="disk full"):
        models.save(model, path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]
