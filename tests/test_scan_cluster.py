"""The scan on clusters: ranks from SLURM / MPI variables without torchrun, chunks claimed through
the output folder, a killed rank's chunks taken over once its claim expires, reruns with another
number of ranks, and every catalogue identical to the one-process scan."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from advrobust import distributed, models
from advrobust.cli import main
from advrobust.scan import ChunkClaims, PartStore, assemble_once, plan_chunks, run_chunks

N, CHUNK = 48, 8


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster")
    torch.manual_seed(0)
    models.save(models.create("morphology_small", image_size=16), folder / "model.safetensors")
    rng = np.random.default_rng(0)
    np.save(folder / "images.npy", rng.normal(0, 1e-3, (N, 3, 16, 16)).astype(np.float32))
    return folder


def _args(folder, out):
    return ["scan", "--model", str(folder / "model.safetensors"), "--data", str(folder / "images.npy"),
            "--attacks", "fgsm,noise", "--eps", "0.002", "--chunk-size", str(CHUNK), "--batch-size", "8",
            "--no-progress", "--out", str(out)]


def _launch(folder, out, env_of_rank, world):
    base = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    base.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    return [subprocess.Popen([sys.executable, "-m", "advrobust.cli", *_args(folder, out)],
                             env={**base, **env_of_rank(rank, world)}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for rank in range(world)]


def _same_catalogue(a, b):
    a, b = pq.read_table(a).to_pandas(), pq.read_table(b).to_pandas()
    assert list(a.columns) == list(b.columns) and len(a) == N
    for column in a.columns:
        assert np.array_equal(a[column].to_numpy(), b[column].to_numpy()), column


def _slurm(rank, world):
    return {"SLURM_PROCID": str(rank), "SLURM_NTASKS": str(world)}


def _mpi(rank, world):
    return {"OMPI_COMM_WORLD_RANK": str(rank), "OMPI_COMM_WORLD_SIZE": str(world)}


@pytest.mark.slow
def test_slurm_and_mpi_ranks_without_torchrun_give_the_one_process_catalogue(survey, tmp_path, capsys):
    one = tmp_path / "one.parquet"
    main(_args(survey, one))
    for name, env_of_rank, world in (("slurm", _slurm, 3), ("mpi", _mpi, 2)):
        out = tmp_path / f"{name}.parquet"
        procs = _launch(survey, out, env_of_rank, world)
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-2000:]
        _same_catalogue(one, out)
        assert not [f for f in os.listdir(str(out) + ".parts") if f.startswith("claim-")]


@pytest.mark.slow
def test_a_rerun_with_another_number_of_ranks_continues(survey, tmp_path, capsys):
    one = tmp_path / "one.parquet"
    main(_args(survey, one))
    out = tmp_path / "cat.parquet"
    folder = str(out) + ".parts"
    procs = _launch(survey, out, _slurm, 2)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
            os.path.isdir(folder) and sum(f.startswith("part-") for f in os.listdir(folder)) >= 2):
        time.sleep(0.01)
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    done_before = sum(f.startswith("part-") for f in os.listdir(folder))
    assert 2 <= done_before and not out.exists()
    for proc in _launch(survey, out, _mpi, 3):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    _same_catalogue(one, out)


_RANK = textwrap.dedent("""
    import sys, time
    import numpy as np
    from advrobust.scan import ChunkClaims, PartStore, plan_chunks, run_chunks
    def compute(chunk):
        time.sleep(float(sys.argv[3]))
        rows = np.arange(chunk.start, chunk.stop)
        return {"id": rows, "twice": 2 * rows}
    store = PartStore(sys.argv[1])
    store.open({"n": 60})
    # a rank on another machine: its death is seen only through its claim expiring
    claims = ChunkClaims(store, owner={"host": sys.argv[2], "pid": 1}, timeout=1.0, poll=0.05)
    run_chunks(store, plan_chunks(60, 6), compute, progress=False, claims=claims)
""")


def _compute(chunk):
    rows = np.arange(chunk.start, chunk.stop)
    return {"id": rows, "twice": 2 * rows}


def test_a_rank_killed_mid_chunk_loses_its_chunk_to_the_others_once_its_claim_expires(tmp_path):
    out = tmp_path / "cat.parquet"
    store = PartStore(out)
    folder = store.folder
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    slow = subprocess.Popen([sys.executable, "-c", _RANK, str(out), "node-a", "30"], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (os.path.isdir(folder) and any(
            f.startswith("claim-") for f in os.listdir(folder))):
        time.sleep(0.01)
    held = [f for f in os.listdir(folder) if f.startswith("claim-")]
    slow.send_signal(signal.SIGKILL)  # dies holding its claim, mid-chunk
    slow.wait(timeout=30)
    assert held == ["claim-00000000"]
    store.open({"n": 60})
    claims = ChunkClaims(store, owner={"host": "node-b", "pid": 2}, timeout=1.0, poll=0.05)
    chunks = plan_chunks(60, 6)
    t0 = time.monotonic()
    computed = run_chunks(store, chunks, _compute, progress=False, claims=claims)
    assert computed == 60 and time.monotonic() - t0 >= 0.9  # waited for the claim to expire, then took it
    assemble_once(store, chunks, claims)
    assert pq.read_table(out).column("id").to_pylist() == list(range(60))
    assert not [f for f in os.listdir(folder) if f.startswith("claim-")]


def test_a_live_claim_is_respected_and_a_dead_local_process_is_seen_at_once(tmp_path):
    store = PartStore(tmp_path / "cat.parquet")
    store.open({})
    chunk = plan_chunks(10, 10)[0]
    live = ChunkClaims(store, owner={"host": "node-a", "pid": 7}, timeout=30)
    other = ChunkClaims(store, timeout=30)
    assert live.acquire(chunk) and not other.acquire(chunk)  # fresh claim of a machine we cannot see
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with open(live.path(chunk), "w") as handle:  # now owned by a process of this host that has exited
        json.dump({"host": other.owner["host"], "pid": int(dead.stdout)}, handle)
    assert other.acquire(chunk)
    other.release(chunk)
    assert not os.path.exists(other.path(chunk))


@pytest.mark.parametrize("env, expected", [
    ({}, (0, 1, "none")),
    ({"RANK": "3", "WORLD_SIZE": "4"}, (3, 4, "torchrun")),
    ({"SLURM_PROCID": "1", "SLURM_NTASKS": "2"}, (1, 2, "slurm")),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5",
      "SLURM_ARRAY_TASK_STEP": "2", "SLURM_ARRAY_TASK_COUNT": "4"}, (1, 4, "slurm")),
    ({"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3"},
     (5, 6, "slurm")),
    # --array=1,3,10 (not arithmetic): task 10 wraps instead of failing
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_ARRAY_TASK_ID": "10", "SLURM_ARRAY_TASK_MIN": "1",
      "SLURM_ARRAY_TASK_COUNT": "3"}, (0, 3, "slurm")),
    ({"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "3"}, (2, 3, "openmpi")),
    ({"PMI_RANK": "0", "PMI_SIZE": "8"}, (0, 8, "pmi")),
])
def test_launcher_rank_reads_each_launcher(monkeypatch, env, expected):
    for name in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN",
                 "SLURM_ARRAY_TASK_STEP", "SLURM_ARRAY_TASK_COUNT", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                 "MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert distributed.launcher_rank() == expected


def test_launcher_rank_refuses_nonsense(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setenv("SLURM_PROCID", "x")
    with pytest.raises(ValueError, match="SLURM_PROCID='x' is not an integer"):
        distributed.launcher_rank()
    monkeypatch.setenv("SLURM_PROCID", "4")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    with pytest.raises(ValueError, match=r"rank 4 is not in \[0, 2\)"):
        distributed.launcher_rank()


def test_hats_output_is_read_back_by_lsdb_with_every_row(survey, tmp_path):
    lsdb = pytest.importorskip("lsdb")
    from advrobust.attacks.by_name import AttackSettings
    from advrobust.data import load_survey
    from advrobust.scan.survey import scan_survey

    model = models.load(survey / "model.safetensors").eval()
    dataset = load_survey(survey / "images.npy")
    rng = np.random.default_rng(5)
    ra, dec = rng.uniform(0, 360, N), np.degrees(np.arcsin(rng.uniform(-1, 1, N)))
    ra[0] = 150.123456789012  # float64 precision survives the trip
    out, hats = tmp_path / "cat.parquet", tmp_path / "robustness_hats"
    scan_survey(model, dataset, str(out), attacks=["fgsm"], settings=AttackSettings(eps=0.002),
                chunk_size=CHUNK, carry={"ra": ra, "dec": dec}, hats=str(hats), progress=False)
    back = lsdb.open_catalog(str(hats)).compute().sort_values("id")
    assert back["id"].tolist() == list(range(N))
    np.testing.assert_array_equal(back["ra"].to_numpy(), ra)
    flat = pq.read_table(out).to_pandas()
    np.testing.assert_array_equal(back["fgsm_flip"].to_numpy(), flat["fgsm_flip"].to_numpy())
    with pytest.raises(ValueError, match="needs the objects' sky positions"):
        scan_survey(model, dataset, str(tmp_path / "b.parquet"), attacks=["fgsm"],
                    settings=AttackSettings(eps=0.002), hats=str(tmp_path / "h2"), progress=False)


def test_cli_scan_copies_sky_positions_and_writes_hats(survey, tmp_path, capsys):
    lsdb = pytest.importorskip("lsdb")
    import pandas as pd

    from cli_runner import run_cli

    rng = np.random.default_rng(6)
    ra, dec = rng.uniform(0, 360, N), rng.uniform(-30, 30, N)
    ids = np.arange(1000, 1000 + N)
    order = rng.permutation(N)
    catalog = tmp_path / "cat.parquet"
    pd.DataFrame({"objid": ids[order], "RA": ra[order], "DEC": dec[order]}).to_parquet(catalog)
    np.save(tmp_path / "ids.npy", ids)
    images = tmp_path / "images.npz"
    np.savez(images, images=np.load(survey / "images.npy"), objid=ids)
    out, hats = tmp_path / "scan.parquet", tmp_path / "scan_hats"
    args = ["scan", "--model", str(survey / "model.safetensors"), "--data", str(images), "--catalog", str(catalog),
            "--id-column", "objid", "--ra-column", "RA", "--dec-column", "DEC", "--hats", str(hats),
            "--attacks", "noise", "--eps", "0.002", "--chunk-size", str(CHUNK), "--no-progress", "--out", str(out)]
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    flat = pq.read_table(out).to_pandas()
    assert flat["id"].tolist() == ids.tolist()
    np.testing.assert_array_equal(flat["ra"].to_numpy(), ra)  # float64, joined on ids
    back = lsdb.open_catalog(str(hats)).compute().sort_values("id")
    np.testing.assert_array_equal(back["dec"].to_numpy(), dec)
    code, _, err = run_cli(capsys, *[a for a in args if a not in ("--dec-column", "DEC")][:-2],
                           "--out", str(tmp_path / "x.parquet"))
    assert code == 2 and "--hats needs the objects' sky positions" in err


def test_an_empty_claim_left_by_a_crash_expires_by_age(tmp_path):
    store = PartStore(tmp_path / "cat.parquet")
    store.open({})
    chunk = plan_chunks(10, 10)[0]
    claims = ChunkClaims(store, timeout=0.2, poll=0.05)
    open(claims.path(chunk), "w").close()  # created, owner never written (killed in between)
    old = time.time() - 1000
    os.utime(claims.path(chunk), (old, old))
    assert claims.acquire(chunk)
    claims.release(chunk)
    assert not [f for f in os.listdir(store.folder) if f.startswith("claim-")]


def test_assemble_once_returns_false_when_another_process_finished_first(tmp_path, monkeypatch):
    store = PartStore(tmp_path / "cat.parquet")
    store.open({})
    chunks = plan_chunks(20, 10)
    claims = ChunkClaims(store, timeout=5, poll=0.05)
    run_chunks(store, chunks, _compute, progress=False, claims=claims)
    assert assemble_once(store, chunks, claims) is True
    mtime = os.stat(store.out).st_mtime
    assert assemble_once(store, chunks, claims) is False  # already newer than every part: not rewritten
    assert os.stat(store.out).st_mtime == mtime
