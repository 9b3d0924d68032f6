"""`advrobust train`, `attack`, `certify` (and `bench all`) on small files written here: the commands
give what the Python API gives on the same data and seeds; config files; resume; one-line errors."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import Subset

from advrobust import models
from advrobust.cli.train import split
from advrobust.data import load_survey, save_arrays, simulate_morphology, simulate_photoz, sky_sigma
from advrobust.train import Trainer
from cli_runner import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]


def run_subprocess(*argv):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "advrobust.cli", *map(str, argv)], capture_output=True, text=True,
                          env=env, timeout=120)


def printed(out: str, name: str) -> float:
    return float(re.search(rf"\b{name}=(\S+)", out).group(1))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 32-object morphology survey cropped to 32x32 (npz + CSV catalogue with ids in another order),
    a photo-z survey (npz with z and ebv), and the initial weights of a 32x32 classifier."""
    d = tmp_path_factory.mktemp("survey")
    morph = simulate_morphology(32, seed=1)
    images = morph["images_y10"][:, :, 34:66, 34:66]
    ids = np.arange(1000, 1032)
    save_arrays(d / "morph.npz", {"images": images, "label": morph["labels"], "objid": ids})
    order = np.random.default_rng(0).permutation(32)
    pd.DataFrame({"objid": ids[order], "cls": morph["labels"][order]}).to_csv(d / "cat.csv", index=False)
    photoz = simulate_photoz(32, seed=2)
    save_arrays(d / "photoz.npz", {"images": photoz["images"], "z": photoz["z_spec"], "ebv": photoz["ebv"]})
    torch.manual_seed(3)
    models.save(models.create("morphology_small", image_size=32), d / "init32.safetensors")
    return d


def train_args(files, out, *extra):
    return ["train", "--model", files / "init32.safetensors", "--data", files / "morph.npz", "--key", "images",
            "--target", "label", "--out", out, "--epochs", "1", "--batch-size", "8", "--val-fraction", "0.25",
            "--no-progress", *extra]


def weights(path):
    return models.load(path).state_dict()


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# ------------------------------------------------------------------------------------------- train
def test_train_classifier_prints_the_metrics_of_the_saved_model(capsys, files, tmp_path):
    out = tmp_path / "m.safetensors"
    code, stdout, err = run_cli(capsys, *train_args(files, out, "--catalog", files / "cat.csv", "--id-column",
                                                    "objid", "--target", "cls"))
    assert code == 0, err
    model = models.load(out)
    data = load_survey(files / "morph.npz", files / "cat.csv", columns={"label": "cls"}, image_key="images",
                       id_column="objid")
    _, val = split(len(data), 0.25, 0)
    scores = Trainer(model, "ce", fields=("image", "label"), progress=False).evaluate(Subset(data, val.tolist()))
    assert len(val) == 8 and "validation on 8 objects" in stdout
    assert printed(stdout, "loss") == pytest.approx(scores["loss"], rel=1e-5)
    assert printed(stdout, "accuracy") == pytest.approx(scores["accuracy"])
    assert f"model -> {out}" in stdout and os.path.exists(f"{out}.checkpoint")


def test_train_photoz_with_ebv(capsys, files, tmp_path):
    from advrobust.metrics import photoz_metrics
    out = tmp_path / "p.safetensors"
    code, stdout, err = run_cli(capsys, "train", "--model", "photoz_small", "--data", files / "photoz.npz", "--key",
                                "images", "--target", "z", "--out", out, "--epochs", "1", "--batch-size", "16",
                                "--no-progress", "--defense", "adversarial", "--attack", "fgsm", "--eps-sky", "2")
    assert code == 0, err
    assert "defense adversarial (fgsm, eps 2 sky sigmas in every band = [" in stdout
    model = models.load(out)
    data = load_survey(files / "photoz.npz", columns={"z_spec": "z", "ebv": "ebv"}, image_key="images")
    _, val = split(32, 0.1, 0)
    x = torch.from_numpy(data.read_images(0, 32))[val]
    with torch.no_grad():
        z_phot = model.eval().z_phot(x, torch.from_numpy(data.values["ebv"][val]))
    expected = photoz_metrics(z_phot, torch.from_numpy(data.values["z_spec"][val]))
    for key in ("sigma_mad", "eta", "bias"):
        assert printed(stdout, key) == pytest.approx(expected[key], rel=1e-5, abs=1e-7)


def test_config_equals_flags_and_flags_override_it(capsys, files, tmp_path):
    assert run_cli(capsys, *train_args(files, tmp_path / "flags.safetensors", "--lr", "0.003"))[0] == 0
    config = tmp_path / "train.toml"
    config.write_text(f'model = "{files / "init32.safetensors"}"\ndata = "{files / "morph.npz"}"\nkey = "images"\n'
                      f'target = "label"\nepochs = 1\nbatch-size = 8\nval_fraction = 0.25\nlr = 0.003\n'
                      f'no-progress = true\n')
    code, _, err = run_cli(capsys, "train", "--config", config, "--out", tmp_path / "config.safetensors")
    assert code == 0, err
    assert same_weights(tmp_path / "flags.safetensors", tmp_path / "config.safetensors")
    # a flag beats the file: --lr 1 on the command line, the config's 0.003 ignored
    code, _, err = run_cli(capsys, "train", "--config", config, "--out", tmp_path / "lr1.safetensors", "--lr", "1")
    assert code == 0, err
    assert not same_weights(tmp_path / "flags.safetensors", tmp_path / "lr1.safetensors")
    assert run_cli(capsys, *train_args(files, tmp_path / "flags1.safetensors", "--lr", "1"))[0] == 0
    assert same_weights(tmp_path / "flags1.safetensors", tmp_path / "lr1.safetensors")


def test_config_model_table_builds_the_named_model(capsys, files, tmp_path):
    config = tmp_path / "train.toml"
    config.write_text('epochs = 1\n[model]\nname = "morphology_small"\nimage_size = 32\nlatent_dim = 12\n')
    out = tmp_path / "named.safetensors"
    code, _, err = run_cli(capsys, *train_args(files, out)[:1], "--config", config, *train_args(files, out)[3:])
    assert code == 0, err
    assert models.load(out).config["latent_dim"] == 12


@pytest.mark.parametrize("defense, flags, printed_as", [
    ("noisy", ("--noise-sigma", "0.002"), "defense noisy (sigma 0.002)"),
    ("mixed", ("--eps", "0.001"), "defense mixed (eps 0.001"),
    ("adversarial", ("--attack", "pgd", "--pgd-steps", "2", "--eps", "0.001"), "defense adversarial (pgd, eps 0.001"),
    ("mmd", ("--mmd-target", "TARGET", "--mmd-key", "images"), "defense mmd (lambda 0.01, 32 target images)"),
])
def test_train_defenses_change_the_training(capsys, files, tmp_path, defense, flags, printed_as):
    flags = [str(files / "morph.npz") if f == "TARGET" else f for f in flags]
    out = tmp_path / f"{defense}.safetensors"
    code, stdout, err = run_cli(capsys, *train_args(files, out, "--defense", defense, *flags, "--val-fraction", "0"))
    assert code == 0, err
    assert printed_as in stdout and "training (no validation set) on 32 objects" in stdout
    assert run_cli(capsys, *train_args(files, tmp_path / "plain.safetensors", "--val-fraction", "0"))[0] == 0
    assert not same_weights(out, tmp_path / "plain.safetensors")


def test_a_flag_beats_the_configs_exclusive_alternative(capsys, files, tmp_path):
    config = tmp_path / "eps.toml"
    config.write_text("defense = 'adversarial'\neps-sky = 2.0\n")
    out = tmp_path / "m.safetensors"
    code, stdout, err = run_cli(capsys, *train_args(files, out), "--config", config, "--eps", "0.0015")
    assert code == 0, err
    assert "defense adversarial (fgsm, eps 0.0015 =" in stdout  # --eps on the command line drops eps-sky
    config.write_text("defense = 'adversarial'\neps-sky = 2.0\neps = 0.001\n")
    code, _, err = run_cli(capsys, *train_args(files, out), "--config", config)
    assert code == 1 and "keys ['eps', 'eps-sky'] exclude each other" in err


@pytest.mark.parametrize("text, message", [
    ("epochz = 3\n", "unknown key 'epochz'"),
    ("epochs = 'three'\n", "key 'epochs' must be an integer, got 'three'"),
    ("defense = 'magic'\n", "key 'defense' must be one of none, adversarial"),
    ("[optim]\nlr = 1\n", "unknown table [optim]"),
])
def test_bad_config_is_one_clear_error(capsys, files, tmp_path, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    code, _, err = run_cli(capsys, *train_args(files, tmp_path / "m.safetensors"), "--config", config)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.safetensors").exists()


def test_train_resumes_from_its_checkpoint(capsys, files, tmp_path):
    out = tmp_path / "resumed.safetensors"
    assert run_cli(capsys, *train_args(files, out, "--epochs", "1"))[0] == 0
    code, stdout, _ = run_cli(capsys, *train_args(files, out, "--epochs", "2"))
    assert code == 0 and "epochs 2-2 of 2 (resumed from the checkpoint at epoch 1)" in stdout
    assert run_cli(capsys, *train_args(files, tmp_path / "straight.safetensors", "--epochs", "2"))[0] == 0
    assert same_weights(out, tmp_path / "straight.safetensors")
    # another option than --epochs: the checkpoint is not silently reused
    code, _, err = run_cli(capsys, *train_args(files, out, "--epochs", "3", "--lr", "0.01"))
    assert code == 1 and "other options (lr: was 0.001, now 0.01)" in err


# ------------------------------------------------------------------------------------------ attack
def test_attack_report_equals_evaluate_grid(capsys, files, tmp_path):
    from advrobust.attacks.by_name import AttackSettings, attack_by_name
    from advrobust.evaluate import evaluate_grid

    out = tmp_path / "report"
    code, stdout, err = run_cli(capsys, "attack", "--model", files / "init32.safetensors", "--data",
                                files / "morph.npz", "--key", "images", "--target", "label", "--attacks",
                                "fgsm,pgd,onepixel,noise", "--eps-sky", "3", "--n", "12", "--pgd-steps", "3",
                                "--population", "20", "--generations", "4", "--batch-size", "5", "--seed", "7",
                                "--out", out)
    assert code == 0, err
    x = torch.from_numpy(np.load(files / "morph.npz")["images"][:12])
    y = torch.from_numpy(np.load(files / "morph.npz")["label"][:12])
    sky = sky_sigma(x)
    settings = AttackSettings(eps=3.0, pgd_steps=3, population=20, generations=4, unit=tuple(sky.tolist()))
    g = torch.Generator().manual_seed(7)
    lo, hi = x.amin((0, 2, 3)), x.amax((0, 2, 3))
    attacks = {a: (lambda a: lambda m: attack_by_name(a, m, settings, task="classifier", image_shape=(3, 32, 32),
                                                      generator=g, seed=7, pixel_lo=lo, pixel_hi=hi))(a)
               for a in ("fgsm", "pgd", "onepixel", "noise")}
    model = models.load(files / "init32.safetensors")
    grid = evaluate_grid({"m": model}, attacks, x, y, batch_size=5).scores["m"]
    import json
    written = json.loads((out / "results.json").read_text())
    assert written["eps"] == 3.0 and written["eps_unit"] == "sky sigma per band"
    for column in ("natural", "fgsm", "pgd", "onepixel", "noise"):
        assert written["scores"][column]["accuracy"] == grid[column]["accuracy"]
        assert written["scores"][column]["f1"] == pytest.approx(grid[column]["f1"])
    for column in ("fgsm", "pgd", "onepixel", "noise"):
        assert written["scores"][column]["success_rate"] == grid[column]["success_rate"]
        # latent distances clean vs attacked: continuous, so equal only for the same perturbations
        assert written["scores"][column]["latent"] == pytest.approx(grid[column]["latent"], rel=1e-6)
    assert written["scores"]["onepixel"]["iterations"] == pytest.approx(grid["onepixel"]["iterations"], nan_ok=True)
    report = (out / "report.md").read_text()
    assert f"| accuracy | {100 * grid['natural']['accuracy']:.2f}% | {100 * grid['fgsm']['accuracy']:.2f}%" in report
    assert "| fgsm | " in report and "eps / sigma_sky(band 0)" in report
    assert f"{100 * grid['pgd']['success_rate']:.2f}%" in stdout
    arrays = np.load(out / "adversarial.npz")
    assert np.array_equal(arrays["images"], x.numpy()) and np.array_equal(arrays["ids"], np.arange(12))
    for name in ("fgsm", "pgd"):  # band b moves by at most 3 of its own sky sigmas
        delta = np.abs(arrays[f"x_adv_{name}"] - x.numpy()).max(axis=(0, 2, 3))
        assert (delta <= 3 * sky + 1e-6).all() and (delta > 1.5 * sky).all()  # (float32 rounding of x + delta)
    assert arrays["x_adv_onepixel"].shape == (12, 3, 32, 32)


# ----------------------------------------------------------------------------------------- certify
def test_certify_rows_equal_certify_batch(capsys, files, tmp_path):
    from advrobust.defenses import Smooth

    out = tmp_path / "cert.csv"
    code, stdout, err = run_cli(capsys, "certify", "--model", files / "init32.safetensors", "--data",
                                files / "morph.npz", "--key", "images", "--catalog", files / "cat.csv",
                                "--id-column", "objid", "--target", "cls", "--sigma", "0.05", "--n0", "8", "--n",
                                "40", "--alpha", "0.01", "--batch-size", "32", "--seed", "5", "--out", out)
    assert code == 0, err
    rows = pd.read_csv(out)
    x = torch.from_numpy(np.load(files / "morph.npz")["images"])
    smooth = Smooth(models.load(files / "init32.safetensors"), 3, 0.05)
    pred, radius = smooth.certify_batch(x, 8, 40, 0.01, 32, generator=torch.Generator().manual_seed(5))
    assert rows["id"].tolist() == list(range(1000, 1032))
    assert rows["prediction"].tolist() == pred.tolist()
    np.testing.assert_allclose(rows["radius"], radius.numpy(), rtol=1e-12)
    assert rows["abstain"].tolist() == (pred == -1).tolist()
    assert rows["label"].tolist() == np.load(files / "morph.npz")["label"].tolist()
    assert "certified accuracy at L2 radius" in stdout and "average certified radius" in stdout


def test_certify_refuses_a_photoz_model(capsys, files, tmp_path):
    model = tmp_path / "pz.safetensors"
    models.save(models.create("photoz_small"), model)
    code, _, err = run_cli(capsys, "certify", "--model", model, "--data", files / "photoz.npz", "--key", "images",
                           "--sigma", "0.01", "--out", tmp_path / "c.parquet")
    assert code == 1 and "photo-z model; randomized smoothing certifies classifiers" in err
    assert not (tmp_path / "c.parquet").exists()


# -------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("flag, value, message", [
    ("--data", "nowhere.npz", "--data nowhere.npz: no such file"),
    ("--key", "imgs", "morph.npz: no array 'imgs'; it holds images, label"),
    ("--model", "CHECKPOINT", "not an advrobust model file (no 'advrobust' metadata)"),
    ("--target", "z_best", "catalogue has no column(s) ['z_best']"),
    ("--device", "cuda", "--device cuda: no CUDA device is visible"),
])
def test_bad_inputs_are_one_line_and_keep_the_old_output(capsys, files, tmp_path, flag, value, message):
    if value == "cuda" and torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    if value == "CHECKPOINT":  # a training checkpoint is not a model file
        assert run_cli(capsys, *train_args(files, tmp_path / "first.safetensors"))[0] == 0
        value = f"{tmp_path / 'first.safetensors'}.checkpoint"
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"an earlier model")
    code, _, err = run_cli(capsys, *train_args(files, out), flag, value)  # the last occurrence of a flag wins
    assert code == 1 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert out.read_bytes() == b"an earlier model"


def test_errors_in_a_real_process_one_line_or_the_traceback_with_debug(files, tmp_path):
    argv = ["attack", "--model", files / "init32.safetensors", "--data", files / "morph.npz", "--key", "images",
            "--target", "nope", "--out", tmp_path / "r"]
    plain = run_subprocess(*argv)
    assert plain.returncode == 1 and plain.stdout == ""
    assert plain.stderr.strip().splitlines() == [
        "advrobust attack: error: catalogue has no column(s) ['nope']; available: label, objid "
        "(ValueError; --debug for the traceback)"]
    debug = run_subprocess(*argv, "--debug")
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------------- bench
def test_bench_all_runs_every_suite_with_quick_and_device(capsys, monkeypatch):
    import importlib

    from advrobust.cli.bench import SUITES
    seen = []
    for name in SUITES:
        module = importlib.import_module(f"advrobust.bench.{name}")
        monkeypatch.setattr(module, "run", lambda args, command, name=name: seen.append(
            (name, args.quick, str(args.device), command)))
    code, _, _ = run_cli(capsys, "bench", "all", "--quick", "--device", "cpu")
    assert code == 0
    assert seen == [(name, True, "cpu", f"advrobust bench {name} --quick --device cpu") for name in SUITES]
