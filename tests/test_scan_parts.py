"""advrobust.scan.parts: chunk plans, exactly-once part files under SIGKILL, refused config changes."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from advrobust.scan import ChunkClaims, PartStore, ScanConfigError, assemble_once, chunk_seed, plan_chunks, run_chunks


def test_plan_covers_every_row_once():
    chunks = plan_chunks(103, 10)
    assert [c.size for c in chunks] == [10] * 10 + [3]
    assert chunks[-1].stop == 103
    assert [r for c in chunks for r in range(c.start, c.stop)] == list(range(103))
    with pytest.raises(ValueError, match="chunk_size"):
        plan_chunks(10, 0)


def test_chunk_seed_depends_on_seed_and_index_only():
    a, b = plan_chunks(100, 10), plan_chunks(100, 10)
    assert chunk_seed(3, a[4]) == chunk_seed(3, b[4])
    assert len({chunk_seed(3, c) for c in a}) == 10
    assert chunk_seed(3, a[4]) != chunk_seed(4, a[4])


def _compute(chunk):
    rows = np.arange(chunk.start, chunk.stop)
    return {"id": rows, "value": np.sqrt(rows) + chunk_seed(0, chunk) % 7}


def test_run_assemble_and_refuse_other_settings(tmp_path):
    out = tmp_path / "cat.parquet"
    store = PartStore(out)
    assert store.open({"seed": 0, "attacks": ["fgsm"]}) is False
    chunks = plan_chunks(25, 10)
    assert run_chunks(store, chunks, _compute, progress=False) == 25
    assert run_chunks(store, chunks, _compute, progress=False) == 0  # all done: nothing recomputed
    table = pq.read_table(store.assemble(chunks))
    assert table.column("id").to_pylist() == list(range(25))
    assert store.open({"seed": 0, "attacks": ["fgsm"]}) is True
    with pytest.raises(ScanConfigError, match=r"seed: was 0, now 1"):
        store.open({"seed": 1, "attacks": ["fgsm"]})
    with pytest.raises(ValueError, match="lengths"):
        store.write(chunks[0], {"id": np.arange(3)})


def test_assemble_refuses_missing_parts(tmp_path):
    store = PartStore(tmp_path / "cat.parquet")
    store.open({})
    chunks = plan_chunks(30, 10)
    run_chunks(store, chunks[:2], _compute, progress=False)
    with pytest.raises(RuntimeError, match="1 chunks not computed"):
        store.assemble(chunks)
    assert not os.path.exists(store.out)


_SCAN = textwrap.dedent("""
    import sys, time
    import numpy as np
    from advrobust.scan import PartStore, plan_chunks, run_chunks
    def compute(chunk):
        time.sleep(0.05)
        rows = np.arange(chunk.start, chunk.stop)
        return {"id": rows, "twice": 2 * rows}
    store = PartStore(sys.argv[1])
    store.open({"n": 400})
    chunks = plan_chunks(400, 7)
    run_chunks(store, chunks, compute, progress=False)
    store.assemble(chunks)
    print("complete", flush=True)
""")


def test_sigkill_at_several_points_then_resume_holds_every_object_once(tmp_path):
    out = tmp_path / "cat.parquet"
    folder = str(out) + ".parts"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for wait in (0.3, 0.7, 1.1):  # seconds into each run: the kill lands mid-chunk, mid-write, anywhere
        proc = subprocess.Popen([sys.executable, "-c", _SCAN, str(out)], env=env, stdout=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not (os.path.isdir(folder) and any(f.startswith("part-") for f in os.listdir(folder))) \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(wait)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert not os.path.exists(out)
    parts_before = len([f for f in os.listdir(folder) if f.startswith("part-")])
    assert 0 < parts_before < 58
    done = subprocess.run([sys.executable, "-c", _SCAN, str(out)], env=env, capture_output=True, timeout=120)
    assert done.stdout.strip() == b"complete", done.stderr.decode()
    ids = pq.read_table(out).column("id").to_numpy()
    assert ids.tolist() == list(range(400))
    assert not [f for f in os.listdir(folder) if "tmp" in f]


def test_two_scans_racing_for_one_manifest_cannot_both_win(tmp_path, monkeypatch):
    out = str(tmp_path / "cat.parquet")
    first, second = PartStore(out), PartStore(out)
    # the second scan read "no manifest yet" just before the first one created it
    monkeypatch.setattr(second, "read_manifest", lambda real=second.read_manifest, calls=[]: (
        calls.append(1) or (None if len(calls) == 1 else real())))
    assert first.open({"seed": 0}) is False
    with pytest.raises(ScanConfigError, match=r"seed: was 0, now 1"):
        second.open({"seed": 1})
    assert first.read_manifest() == {"seed": 0}
    assert os.listdir(first.folder) == ["manifest.json"]  # no temporary left behind


def _open_after_barrier(out, seed, barrier, results):
    barrier.wait()
    try:
        PartStore(out).open({"seed": seed})
        results.put(("ok", seed))
    except ScanConfigError:
        results.put(("refused", seed))


def test_simultaneous_scans_with_other_settings_leave_exactly_one_owner(tmp_path):
    import multiprocessing as mp

    context = mp.get_context("fork")
    out = str(tmp_path / "cat.parquet")
    barrier, results = context.Barrier(6), context.Queue()
    procs = [context.Process(target=_open_after_barrier, args=(out, seed, barrier, results)) for seed in range(6)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    outcome = [results.get(timeout=10) for _ in procs]
    winners = [seed for status, seed in outcome if status == "ok"]
    assert len(winners) == 1 and PartStore(out).read_manifest() == {"seed": winners[0]}
