"""advrobust scan: rows equal the attacks run in Python, a 2-process torchrun scan equals the
1-process scan, a restart with other settings is refused, bad input gives one line."""
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from advrobust import models
from advrobust.attacks import FGSM, OnePixel
from advrobust.cli import main
from advrobust.scan import chunk_seed, plan_chunks

N, CHUNK = 40, 16


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """A random-weight 32x32 ConvNet and 40 images of sky noise plus a blob, as .npy files."""
    folder = tmp_path_factory.mktemp("scan")
    torch.manual_seed(0)
    model = models.create("morphology_small", image_size=32)
    models.save(model, folder / "model.safetensors")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    blob = np.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / 20.0)
    images = (rng.normal(0, 1e-3, (N, 3, 32, 32)) + rng.uniform(0.01, 0.05, (N, 3, 1, 1)) * blob).astype(np.float32)
    np.save(folder / "images.npy", images)
    return folder, model.eval(), images


def scan_args(folder, out, *extra):
    return ["scan", "--model", str(folder / "model.safetensors"), "--data", str(folder / "images.npy"),
            "--attacks", "fgsm,pgd,onepixel,noise", "--eps", "0.002", "--population", "8",
            "--generations", "3", "--chunk-size", str(CHUNK), "--batch-size", "8", "--valid-lo", "-0.01",
            "--valid-hi", "0.06", "--no-progress", "--out", str(out), *extra]


def test_scan_rows_equal_the_attacks_run_in_python(survey, tmp_path, capsys):
    folder, model, images = survey
    out = tmp_path / "cat.parquet"
    main(scan_args(folder, out))
    assert "40 objects" in capsys.readouterr().out
    cat = pq.read_table(out).to_pandas()
    assert cat["id"].tolist() == list(range(N))
    x = torch.from_numpy(images)
    with torch.no_grad():
        clean = model(x).argmax(1)
    assert cat["class"].tolist() == clean.tolist()
    x_fgsm = FGSM(model, eps=0.002, lo=-0.01, hi=0.06)(x, clean)
    with torch.no_grad():
        assert cat["fgsm_class"].tolist() == model(x_fgsm).argmax(1).tolist()
    assert (cat["fgsm_flipped"] == (cat["fgsm_class"] != cat["class"])).all()
    chunk = plan_chunks(N, CHUNK)[1]
    xb = x[chunk.start:chunk.start + 8]  # the first attack batch of chunk 1
    res = OnePixel(model, population=8, max_iter=3, lo=-0.01, hi=0.06, seed=chunk_seed(0, chunk)).run(xb, clean[chunk.start:chunk.start + 8])
    rows = cat.iloc[chunk.start:chunk.start + 8]
    assert rows["onepixel_iterations"].tolist() == res.iterations.tolist()
    assert rows["onepixel_success"].tolist() == res.success.tolist()
    assert np.allclose(cat["fgsm_eps"], 0.002) and "onepixel_eps" not in cat


def test_scan_restart_with_other_settings_is_refused_in_one_line(survey, tmp_path, capsys):
    folder, _, _ = survey
    out = tmp_path / "cat.parquet"
    main(scan_args(folder, out))
    capsys.readouterr()
    with pytest.raises(SystemExit) as err:
        main(scan_args(folder, out, "--seed", "3"))
    assert "seed: was 0, now 3" in str(err.value.code) and "\n" not in str(err.value.code)
    with pytest.raises(SystemExit) as err:
        main(["scan", "--model", str(folder / "images.npy"), "--data", str(folder / "images.npy"),
              "--out", str(tmp_path / "x.parquet")])
    assert str(err.value.code).startswith("advrobust scan: error:") and "\n" not in str(err.value.code)


def test_two_process_torchrun_scan_equals_one_process(survey, tmp_path, capsys):
    folder, _, _ = survey
    one, two = tmp_path / "one.parquet", tmp_path / "two.parquet"
    main(scan_args(folder, one))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "advrobust.cli", *scan_args(folder, two)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = pq.read_table(one).to_pandas(), pq.read_table(two).to_pandas()
    assert list(a.columns) == list(b.columns)
    for column in a.columns:
        assert np.array_equal(a[column].to_numpy(), b[column].to_numpy()), column


def test_scan_without_a_valid_range_draws_one_pixel_values_in_the_first_chunks_range(survey, tmp_path, capsys):
    folder, _, images = survey
    args = scan_args(folder, tmp_path / "cat.parquet")
    for flag in ("--valid-lo", "--valid-hi"):
        i = args.index(flag)
        del args[i:i + 2]
    main(args)
    import json

    assert pq.read_table(tmp_path / "cat.parquet").num_rows == N
    with open(str(tmp_path / "cat.parquet") + ".parts/manifest.json") as handle:
        manifest = json.load(handle)
    assert manifest["lo"] is None and manifest["hi"] is None  # no clamp for the gradient attacks
    assert np.allclose(manifest["pixel_lo"], images[:CHUNK].min(axis=(0, 2, 3)))
    assert np.allclose(manifest["pixel_hi"], images[:CHUNK].max(axis=(0, 2, 3)))


def test_scan_eps_sky_is_k_sky_sigmas_in_every_band(survey, tmp_path, capsys):
    import json

    from advrobust.data.sky import sky_sigma

    folder, model, images = survey
    out = tmp_path / "cat.parquet"
    args = scan_args(folder, out, "--attacks", "fgsm,noise")
    i = args.index("--eps")
    args[i:i + 2] = ["--eps-sky", "3"]
    main(args)
    sky = sky_sigma(images[:1024])  # the first min(N, 1024) objects, whatever --chunk-size is
    assert "eps = 3 sky sigmas per band" in capsys.readouterr().out
    cat = pq.read_table(out).to_pandas()
    assert np.allclose(cat["fgsm_eps"], 3.0) and np.allclose(cat["noise_eps"], 3.0)
    with open(str(out) + ".parts/manifest.json") as handle:
        manifest = json.load(handle)
    assert np.allclose(manifest["settings"]["unit"], sky) and manifest["settings"]["eps"] == 3.0
    x = torch.from_numpy(images)
    with torch.no_grad():
        clean = model(x).argmax(1)
    x_fgsm = FGSM(model, eps=3.0, lo=-0.01, hi=0.06, unit=torch.from_numpy(sky))(x, clean)
    move = (x_fgsm - x).abs().amax((0, 2, 3)).numpy()
    assert np.ptp(sky) > 1e-3 * sky.mean()  # the measured sigmas differ by band (by a few per cent here) ...
    assert np.allclose(move, 3.0 * sky, rtol=1e-4)  # ... and each band gets its own budget
    with torch.no_grad():
        assert cat["fgsm_class"].tolist() == model(x_fgsm).argmax(1).tolist()


# ----------------------------------------------------------------- the shared survey options of `scan`
def test_scan_nan_policy_reject_scans_every_kept_object_exactly_once(survey, tmp_path, capsys):
    """Objects with NaN pixels rejected, in chunks 0, 1 and 2: the catalogue equals a scan of the file
    without them (same chunks over the kept objects, same per-chunk seeds), with the original row
    numbers as ids; a chunk deleted and the command run again is recomputed once, nothing else."""
    import json

    folder, _, images = survey
    bad = [3, 16, 17, 39]
    holed = images.copy()
    holed[bad, 1, 5, 7] = np.nan
    np.save(tmp_path / "holed.npy", holed)
    kept = np.setdiff1d(np.arange(N), bad)
    np.save(tmp_path / "kept.npy", images[kept])
    args = scan_args(folder, tmp_path / "cat.parquet", "--nan-policy", "reject")
    args[args.index("--data") + 1] = str(tmp_path / "holed.npy")
    main(args)
    assert f"{len(kept)} objects" in capsys.readouterr().out
    reference = scan_args(folder, tmp_path / "ref.parquet")
    reference[reference.index("--data") + 1] = str(tmp_path / "kept.npy")
    main(reference)
    cat, ref = pq.read_table(tmp_path / "cat.parquet").to_pandas(), pq.read_table(tmp_path / "ref.parquet").to_pandas()
    assert cat["id"].tolist() == kept.tolist()  # every kept object once, in order; no rejected one
    assert ref["id"].tolist() == list(range(len(kept)))
    assert list(cat.columns) == list(ref.columns)
    for column in cat.columns.drop("id"):
        assert np.array_equal(cat[column].to_numpy(), ref[column].to_numpy()), column
    parts = tmp_path / "cat.parquet.parts"
    with open(parts / "manifest.json") as handle:
        assert json.load(handle)["objects"] == len(kept)
    assert sorted(p.name for p in parts.glob("part-*.parquet")) == [f"part-{i:08d}.parquet" for i in range(3)]
    os.remove(parts / "part-00000001.parquet")
    main(args)
    assert f"resumed, {CHUNK} computed here" in capsys.readouterr().out
    again = pq.read_table(tmp_path / "cat.parquet").to_pandas()
    assert again["id"].tolist() == kept.tolist()
    for column in cat.columns:
        assert np.array_equal(again[column].to_numpy(), cat[column].to_numpy()), column


def test_scan_nan_policy_raise_is_the_default_and_names_the_objects(survey, tmp_path):
    folder, _, images = survey
    holed = images.copy()
    holed[5, 0, 1, 1] = np.nan
    np.save(tmp_path / "holed.npy", holed)
    args = scan_args(folder, tmp_path / "cat.parquet")
    args[args.index("--data") + 1] = str(tmp_path / "holed.npy")
    with pytest.raises(SystemExit) as err:
        main(args)
    message = str(err.value.code)
    assert message.startswith("advrobust scan: error:") and "nan_policy" in message and "\n" not in message
    assert not (tmp_path / "cat.parquet").exists()


def test_scan_config_equals_flags_and_flags_override_it(survey, tmp_path, capsys):
    folder, _, _ = survey
    main(scan_args(folder, tmp_path / "flags.parquet", "--attacks", "fgsm,noise"))
    config = tmp_path / "scan.toml"
    config.write_text(f'model = "{folder / "model.safetensors"}"\ndata = "{folder / "images.npy"}"\n'
                      f'attacks = ["fgsm", "noise"]\neps = 0.002\nchunk-size = {CHUNK}\nbatch_size = 8\n'
                      'valid-lo = -0.01\nvalid-hi = [0.06]\nno-progress = true\nseed = 3\n')
    main(["scan", "--config", str(config), "--seed", "0", "--out", str(tmp_path / "config.parquet")])
    a, b = pq.read_table(tmp_path / "flags.parquet").to_pandas(), pq.read_table(tmp_path / "config.parquet").to_pandas()
    assert list(a.columns) == list(b.columns) and "fgsm_class" in a and "pgd_class" not in a
    for column in a.columns:
        assert np.array_equal(a[column].to_numpy(), b[column].to_numpy()), column
    import json
    with open(str(tmp_path / "config.parquet") + ".parts/manifest.json") as handle:
        assert json.load(handle)["seed"] == 0  # the command line's --seed beat the config's 3


@pytest.mark.parametrize("extra, code, message", [
    (("--attacks", "fgsm,nope"), 2, "unknown attack(s) ['nope']"),
    (("--nan-policy", "drop"), 2, "argument --nan-policy: invalid choice: 'drop'"),
    (("--device", "gpu"), 1, "--device must be cpu, cuda or cuda:N, got 'gpu'"),
    (("--device", "cuda"), 1, "--device cuda: no CUDA device is visible"),
])
def test_scan_usage_and_device_errors(survey, tmp_path, capsys, extra, code, message):
    if "cuda" in extra and torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    from cli_runner import run_cli

    folder, _, _ = survey
    got, _, err = run_cli(capsys, *scan_args(folder, tmp_path / "cat.parquet", *extra))
    assert got == code and message in err, err
    assert not (tmp_path / "cat.parquet").exists()
