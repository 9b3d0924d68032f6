"""advrobust.data.io writers under SIGKILL: an overwrite killed at any moment leaves the old file
whole (or the new one), never a truncated or missing file, and the next save removes the leftover."""
import os
import signal
import time

import numpy as np
import pytest

from advrobust.atomic import stale_temporaries
from advrobust.data import load_arrays, save_arrays

# ~16 MB per file: one save takes tens of milliseconds, so the kills below land mid-write.
_SHAPE = (64, 4, 128, 128)


def _content(value: float) -> dict:
    return {"images": np.full(_SHAPE, value, dtype=np.float32), "z_spec": np.full(64, value)}


def _value(path) -> float:
    arrays = load_arrays(path)
    images, z = arrays["images"], arrays["z_spec"]
    assert images.shape == _SHAPE and z.shape == (64,)
    value = float(images.flat[0])
    assert (images == value).all() and (z == value).all()
    return value


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("suffix", [".npz", ".h5", ".fits"])
def test_save_arrays_survives_sigkill_at_several_moments(tmp_path, suffix):
    path = tmp_path / f"survey{suffix}"
    save_arrays(path, _content(1.0))
    for delay in (0.0, 0.03, 0.07, 0.12, 0.2):
        pid = os.fork()
        if pid == 0:  # the writer: overwrites the file again and again until killed
            try:
                for i in range(1000):
                    save_arrays(path, _content(float(2 + i % 2)))
            finally:
                os._exit(0)
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert _value(path) in (1.0, 2.0, 3.0), f"killed after {delay} s"
        assert len(stale_temporaries(path)) <= 1
    save_arrays(path, _content(4.0))
    assert _value(path) == 4.0
    assert os.listdir(tmp_path) == [path.name]
