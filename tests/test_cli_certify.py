"""`advrobust certify --adaptive` and photo-z certification: rows equal the Python API with the same
seeds, resumable exactly-once Parquet (SIGKILL then resume), one-line errors naming the flag."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from advrobust import models
from advrobust.data import save_arrays, simulate_morphology, simulate_photoz
from advrobust.defenses import Smooth, SmoothRegression, certified_non_outlier
from advrobust.scan import chunk_seed, plan_chunks
from cli_runner import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]
RADII = (0.0, 0.02, 0.05)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """12 morphology objects (32x32, labels, ids 500..511), 10 photo-z objects (z, ebv), and the
    initial weights of a 32x32 classifier and of a photo-z model."""
    d = tmp_path_factory.mktemp("certify")
    morph = simulate_morphology(12, seed=1)
    save_arrays(d / "morph.npz", {"images": morph["images_y10"][:, :, 34:66, 34:66], "label": morph["labels"],
                                  "objid": np.arange(500, 512)})
    photoz = simulate_photoz(10, seed=2)
    save_arrays(d / "photoz.npz", {"images": photoz["images"], "z": photoz["z_spec"], "ebv": photoz["ebv"]})
    torch.manual_seed(3)
    models.save(models.create("morphology_small", image_size=32), d / "cls.safetensors")
    torch.manual_seed(4)
    models.save(models.create("photoz_small"), d / "pz.safetensors")
    return d


def adaptive_args(files, out, *extra):
    return ["certify", "--model", files / "cls.safetensors", "--data", files / "morph.npz", "--key", "images",
            "--target", "label", "--id-column", "objid", "--sigma", "0.05", "--adaptive",
            "--radii", ",".join(map(str, RADII)), "--n-max", "300", "--alpha", "0.01", "--batch-size", "64",
            "--seed", "7", "--chunk-size", "5", "--no-progress", "--out", out, *extra]


def photoz_args(files, out, *extra):
    return ["certify", "--model", files / "pz.safetensors", "--data", files / "photoz.npz", "--key", "images",
            "--target", "z", "--sigma", "0.01", "--radius", "0.005", "--n", "64", "--alpha", "0.05",
            "--batch-size", "50", "--seed", "3", "--chunk-size", "4", "--no-progress", "--out", out, *extra]


def test_adaptive_rows_equal_certify_adaptive_with_the_chunk_seeds(capsys, files, tmp_path):
    out = tmp_path / "adaptive.parquet"
    code, stdout, err = run_cli(capsys, *adaptive_args(files, out))
    assert code == 0, err
    rows = pd.read_parquet(out)
    data = np.load(files / "morph.npz")
    smooth = Smooth(models.load(files / "cls.safetensors"), 3, 0.05)
    x = torch.from_numpy(data["images"])
    for chunk in plan_chunks(12, 5):
        part = rows.iloc[chunk.start:chunk.stop]
        cert = smooth.certify_adaptive(x[chunk.start:chunk.stop], RADII, alpha=0.01, n_max=300, batch_size=64,
                                       generator=torch.Generator().manual_seed(chunk_seed(7, chunk)))
        assert part["prediction"].tolist() == cert.prediction.tolist()
        assert part["samples"].tolist() == cert.samples.tolist()
        np.testing.assert_array_equal(part["radius"], cert.radius.numpy())
        np.testing.assert_array_equal(part["p_lower"], cert.p_lower.numpy())
        for j, r in enumerate(RADII):
            assert part[f"certified_at_{r:g}"].tolist() == cert.certified[:, j].tolist()
    assert rows["id"].tolist() == list(range(500, 512))
    assert rows["label"].tolist() == data["label"].tolist()
    assert rows["abstain"].tolist() == (rows["prediction"] == -1).tolist()
    assert "certified accuracy at L2 radius" in stdout and "not the largest radius" in stdout
    # run again: every part exists, nothing is recomputed, same catalogue
    code, stdout, err = run_cli(capsys, *adaptive_args(files, out))
    assert code == 0 and "resumed, 0 certified here" in stdout, err
    pd.testing.assert_frame_equal(pd.read_parquet(out), rows)


def test_photoz_rows_equal_smooth_regression(capsys, files, tmp_path):
    out = tmp_path / "pz.parquet"
    code, stdout, err = run_cli(capsys, *photoz_args(files, out))
    assert code == 0, err
    rows = pd.read_parquet(out)
    data = np.load(files / "photoz.npz")
    smoother = SmoothRegression(models.load(files / "pz.safetensors"), 0.01)
    x, ebv = torch.from_numpy(data["images"]), torch.from_numpy(data["ebv"])
    for chunk in plan_chunks(10, 4):
        s = slice(chunk.start, chunk.stop)
        cert = smoother.certify(x[s], 0.005, ebv[s], alpha=0.05, n=64, batch_size=50,
                                generator=torch.Generator().manual_seed(chunk_seed(3, chunk)))
        part = rows.iloc[s]
        for name in ("median", "lo", "hi", "samples"):
            np.testing.assert_array_equal(part[name], getattr(cert, name).numpy())
        z = torch.from_numpy(data["z"][s]).double()
        assert part["non_outlier"].tolist() == certified_non_outlier(cert.lo, cert.hi, z).tolist()
    assert (rows["lo"] <= rows["median"]).all() and (rows["median"] <= rows["hi"]).all()
    np.testing.assert_allclose(rows["z_spec"], data["z"])
    assert "certified non-outliers" in stdout


_KILLABLE = """
import sys
from advrobust.cli import main
main(sys.argv[1:])
"""


def test_sigkill_then_resume_gives_the_straight_run_exactly_once(capsys, files, tmp_path):
    # one object per chunk, each run to n_max (r = 3 sigma cannot be settled below ~6,000 draws): a kill
    # lands between parts
    slow = ("--chunk-size", "1", "--radii", "0,0.05,0.15", "--n-max", "1500")
    straight = tmp_path / "straight.parquet"
    t0 = time.perf_counter()
    assert run_cli(capsys, *adaptive_args(files, straight, *slow))[0] == 0
    print(f"straight run {time.perf_counter() - t0:.2f} s")
    out = tmp_path / "killed.parquet"
    folder = str(out) + ".parts"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    argv = [str(a) for a in adaptive_args(files, out, *slow)]
    for _ in range(2):
        proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, *argv], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not (os.path.isdir(folder) and any(f.startswith("part-") for f in os.listdir(folder))) \
                and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    parts = [f for f in os.listdir(folder) if f.startswith("part-")]
    assert not out.exists() and 0 < len(parts) < 12, parts
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 0 and "resumed" in stdout, err
    rows = pd.read_parquet(out)
    assert rows["id"].tolist() == list(range(500, 512))
    pd.testing.assert_frame_equal(rows, pd.read_parquet(straight))


@pytest.mark.parametrize("which, extra, message", [
    ("adaptive", ["--radii", "0.1,-1"], "--radii must be distinct finite L2 radii >= 0"),
    ("adaptive", ["--radii", "0.1,0.1"], "--radii must be distinct finite L2 radii >= 0"),
    ("photoz", ["--radius", "-0.1"], "--radius must be a finite L2 radius >= 0"),
    ("adaptive", ["--n-max", "0"], "--n-max must be a positive integer"),
    ("adaptive", ["--radius", "0.1"], "--radius is for photo-z models"),
    ("classifier", ["--radii", "0.1"], "--radii needs --adaptive"),
    ("classifier", ["--adaptive"], "--adaptive needs --radii"),
    ("photoz", ["--adaptive"], "--adaptive and --radii are for classifiers"),
    ("photoz", ["--out", "x.csv"], "--out must be a .parquet file for photo-z"),
    ("photoz", ["--alpha", "1.5"], "--alpha must be in (0, 1)"),
    ("photoz", ["--sigma", "0"], "--sigma must be a positive noise level"),
    ("photoz", ["--outlier-threshold", "-1"], "--outlier-threshold must be > 0"),
])
def test_bad_flags_are_one_line_naming_the_flag(capsys, files, tmp_path, which, extra, message):
    if which == "adaptive":
        argv = adaptive_args(files, tmp_path / "a.parquet", *extra)
    elif which == "photoz":
        argv = photoz_args(files, tmp_path / "p.parquet", *extra)
    else:
        argv = ["certify", "--model", files / "cls.safetensors", "--data", files / "morph.npz", "--key", "images",
                "--sigma", "0.05", "--out", tmp_path / "c.parquet", *extra]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and message in err, err
    assert not list(tmp_path.iterdir())


def test_photoz_without_radius_names_the_flag(capsys, files, tmp_path):
    argv = [a for a in photoz_args(files, tmp_path / "p.parquet") if a not in ("--radius", "0.005")]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "--radius: a photo-z model" in err
