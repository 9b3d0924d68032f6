"""Issue 23: no silent answer from a broken model, no stale resume, no file that allocates gigabytes,
and the smaller findings of the bad-input probe. Each test fails on the code before the fix."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from advrobust import models
from advrobust.atomic import atomic_path, stale_temporaries


def _nan_classifier():
    torch.manual_seed(0)
    model = models.create("convnet", image_size=8, channels=(4,), kernel_sizes=(3,), latent_dim=8)
    with torch.no_grad():
        model.head.bias.fill_(float("nan")) if hasattr(model, "head") and hasattr(model.head, "bias") else \
            next(iter(model.parameters())).fill_(float("nan"))
    return model


def _x(n=4):
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------- 1. non-finite model outputs

def test_smooth_refuses_a_nan_model_and_nan_pixels():
    from advrobust.defenses import Smooth

    smooth = Smooth(_nan_classifier(), 3, 0.1)
    x = _x(2)
    with pytest.raises(ValueError, match=r"Smooth.predict: the model's output .*NaN/Inf"):
        smooth.predict(x[0], 20, 0.01, 8)
    with pytest.raises(ValueError, match=r"Smooth.certify: the model's output .*NaN/Inf"):
        smooth.certify(x[0], 10, 20, 0.01, 8)
    with pytest.raises(ValueError, match=r"Smooth.certify_batch: the model's output .*NaN/Inf"):
        smooth.certify_batch(x, 10, 20, 0.01, 8)
    with pytest.raises(ValueError, match=r"Smooth.certify_adaptive: the model's output .*NaN/Inf"):
        smooth.certify_adaptive(x, [0.1], alpha=0.01, n_max=40, batch_size=8)
    good = Smooth(models.create("convnet", image_size=8, channels=(4,), kernel_sizes=(3,), latent_dim=8), 3, 0.1)
    x[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match=r"Smooth.certify_batch: x has 1 NaN/Inf values \(samples \[1\]\)"):
        good.certify_batch(x, 10, 20, 0.01, 8)
    with pytest.raises(ValueError, match=r"Smooth.certify: x has 1 NaN/Inf"):
        good.certify(x[1], 10, 20, 0.01, 8)


def test_evaluation_paths_refuse_a_nan_model():
    from advrobust.attacks import uniform_noise
    from advrobust.evaluate import evaluate_grid, natural, transfer_evaluate
    from advrobust.scan.rows import scan_rows
    from advrobust.attacks.by_name import AttackSettings

    model, x, y = _nan_classifier(), _x(), torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="NaN/Inf for 4 of 4 samples"):
        evaluate_grid({"m": model}, {}, x, y)
    with pytest.raises(ValueError, match="NaN/Inf"):
        evaluate_grid({"m": model}, {"noise": natural(uniform_noise, eps=0.01)}, x, y)
    with pytest.raises(ValueError, match="transfer_evaluate: .*NaN/Inf"):
        transfer_evaluate(None, x, y, {"m": model}, x_adv=x)
    with pytest.raises(ValueError, match="NaN/Inf"):
        scan_rows(model, x, (), np.arange(4), task="classifier", attacks=["noise"],
                  settings=AttackSettings(eps=0.01), seed=0)


def test_training_a_nan_model_stops_and_saves_nothing(tmp_path):
    from advrobust.train import Trainer

    model = _nan_classifier()
    data = TensorDataset(_x(8), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    trainer = Trainer(model, checkpoint=str(tmp_path / "ckpt.safetensors"), progress=False)
    with pytest.raises(ValueError, match=r"Trainer: the loss is nan at epoch 1: the model has NaN/Inf weights"):
        trainer.fit(data, 2, batch_size=4)
    assert not os.path.exists(tmp_path / "ckpt.safetensors")


def test_training_that_leaves_nan_weights_is_not_saved(tmp_path, monkeypatch):
    from advrobust.train import Trainer

    torch.manual_seed(0)
    model = models.create("convnet", image_size=8, channels=(4,), kernel_sizes=(3,), latent_dim=8)
    data = TensorDataset(_x(4), torch.tensor([0, 1, 2, 0]))
    trainer = Trainer(model, checkpoint=str(tmp_path / "ckpt.safetensors"), progress=False)
    step = trainer.optimizer.step

    def poisoning_step(*a, **k):
        step(*a, **k)
        with torch.no_grad():
            next(iter(model.parameters())).fill_(float("inf"))
    monkeypatch.setattr(trainer.optimizer, "step", poisoning_step)
    with pytest.raises(ValueError, match="epoch 1 left NaN/Inf weights"):
        trainer.fit(data, 1, batch_size=4)
    assert not os.path.exists(tmp_path / "ckpt.safetensors")


def test_models_load_refuses_nonfinite_weights_unless_asked(tmp_path):
    model = _nan_classifier()
    models.save(model, tmp_path / "nan.safetensors")
    with pytest.raises(ValueError, match="NaN/Inf weights.*allow_nonfinite=True"):
        models.load(tmp_path / "nan.safetensors")
    loaded = models.load(tmp_path / "nan.safetensors", allow_nonfinite=True)
    assert not bool(torch.isfinite(loaded.head.bias).all())


# ---------------------------------------------------------------- 3. model headers

def test_header_asking_for_thousands_of_cells_is_refused_at_once_with_a_short_line(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "huge.safetensors"
    header = {"name": "pasquet_inception", "kwargs": {"cells": [[64, 48, 64, 64, 64]] * 20000}}
    save_file({"w": torch.zeros(1)}, str(path), metadata={"advrobust": json.dumps(header)})
    with pytest.raises(ValueError, match=r"100000 values for a file of 1 tensors.*refused before building") as err:
        models.load(path)
    assert len(str(err.value)) < 400
    header = {"name": "photoz_small", "kwargs": {"channels": [16, 32, 32], "fc_width": 64, "junk": "x" * 100000}}
    save_file({"w": torch.zeros(1)}, str(path), metadata={"advrobust": json.dumps(header)})
    with pytest.raises(ValueError, match="header") as err:
        models.load(path)
    assert len(str(err.value)) < 1000


# ---------------------------------------------------------------- 8. model files

@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_models_reload_in_the_dtype_they_were_saved_in(tmp_path, dtype):
    model = models.create("photoz_small").to(dtype)
    models.save(model, tmp_path / "m.safetensors")
    loaded = models.load(tmp_path / "m.safetensors")
    assert next(loaded.parameters()).dtype == dtype
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_model_files_get_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        models.save(models.create("photoz_small"), tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert oct(os.stat(tmp_path / "m.safetensors").st_mode & 0o777) == oct(0o644)


_SLOW_SAVE = textwrap.dedent("""
    import sys, time
    from advrobust import models
    import advrobust.models.registry as registry
    real = registry.save_file
    def slow(tensors, path, metadata=None):
        real(tensors, path, metadata=metadata)
        print("written", flush=True)
        time.sleep(60)
    registry.save_file = slow
    models.save(models.create("photoz_small"), sys.argv[1])
""")


def test_a_killed_save_whose_process_is_not_yet_reaped_is_cleaned_by_the_next_save(tmp_path):
    target = tmp_path / "m.safetensors"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_SAVE, str(target)], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline().strip() == b"written"
        os.kill(proc.pid, signal.SIGKILL)
        for _ in range(100):  # a zombie until waited for
            with open(f"/proc/{proc.pid}/stat", "rb") as handle:
                if b") Z" in handle.read():
                    break
            import time
            time.sleep(0.05)
        assert len(stale_temporaries(target)) == 1
        models.save(models.create("photoz_small"), target)
        assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]
    finally:
        proc.wait(timeout=30)


# ---------------------------------------------------------------- 2. resume over changed inputs

@pytest.fixture(scope="module")
def small_survey(tmp_path_factory):
    """A random 16x16 classifier, 24 noise images (.npy) and a CSV catalogue with labels."""
    import pandas as pd

    folder = tmp_path_factory.mktemp("rel23")
    torch.manual_seed(0)
    models.save(models.create("morphology_small", image_size=16), folder / "m.safetensors")
    rng = np.random.default_rng(0)
    np.save(folder / "img.npy", rng.normal(0, 1e-3, (24, 3, 16, 16)).astype(np.float32))
    pd.DataFrame({"label": rng.integers(0, 3, 24)}).to_csv(folder / "cat.csv", index=False)
    return folder


def _scan(folder, out, *extra):
    from advrobust.cli import main

    main([str(a) for a in ("scan", "--model", folder / "m.safetensors", "--data", folder / "img.npy", "--attacks",
                           "noise", "--eps", "0.001", "--chunk-size", "8", "--no-progress", "--out", out, *extra)])


def test_scan_resume_refuses_data_rewritten_in_place_and_changed_row_options(small_survey, tmp_path, capsys):
    import shutil

    folder = tmp_path / "in"
    shutil.copytree(small_survey, folder)
    out = tmp_path / "cat.parquet"
    _scan(folder, out)
    _scan(folder, out)  # same inputs: resumes (nothing left to compute)
    with pytest.raises(SystemExit, match=r"nan_policy: was 'raise', now 'reject'"):
        _scan(folder, out, "--nan-policy", "reject")
    images = np.load(folder / "img.npy", mmap_mode="r+")  # same length, same first chunk
    images[20] += 1e-3
    images.flush()
    del images
    with pytest.raises(SystemExit, match=r"data_fingerprint: the file changed since the run started \(.*its content\)"):
        _scan(folder, out)


def test_train_resume_refuses_replaced_data(small_survey, tmp_path, capsys):
    import shutil

    import pandas as pd
    from tests.cli_runner import run_cli

    folder = tmp_path / "in"
    shutil.copytree(small_survey, folder)
    args = ["train", "--model", folder / "m.safetensors", "--data", folder / "img.npy", "--catalog",
            folder / "cat.csv", "--target", "label", "--out", tmp_path / "m.safetensors", "--batch-size", "8",
            "--no-progress"]
    code, _, err = run_cli(capsys, *args, "--epochs", "1")
    assert code == 0, err
    table = pd.read_csv(folder / "cat.csv")
    table["label"] = (table["label"] + 1) % 3
    table.to_csv(folder / "cat.csv", index=False)
    code, _, err = run_cli(capsys, *args, "--epochs", "2")
    assert code == 1 and "catalog_fingerprint: the file changed since the run started" in err


# ---------------------------------------------------------------- 4. scan --eps on tiny stamps

def test_scan_on_two_pixel_stamps_works_with_eps_and_refuses_eps_sky_before_any_output(tmp_path, capsys):
    from advrobust.cli import main

    torch.manual_seed(0)
    models.save(models.create("convnet", image_size=2, channels=(4,), kernel_sizes=(1,), latent_dim=8),
                tmp_path / "m.safetensors")
    np.save(tmp_path / "img.npy", np.random.default_rng(0).normal(0, 1e-3, (8, 3, 2, 2)).astype(np.float32))
    args = ["scan", "--model", str(tmp_path / "m.safetensors"), "--data", str(tmp_path / "img.npy"), "--attacks",
            "fgsm,noise", "--chunk-size", "4", "--no-progress"]
    main(args + ["--eps", "0.001", "--out", str(tmp_path / "a.parquet")])
    assert "eps = 0.001 image units; sky sigma not measurable" in capsys.readouterr().out
    main(args + ["--eps", "0.001", "--out", str(tmp_path / "a.parquet")])  # a rerun resumes
    with pytest.raises(SystemExit, match=r"--eps-sky needs the sky sigma .* 2x2 px stamps.*--eps"):
        main(args + ["--eps-sky", "1", "--out", str(tmp_path / "b.parquet")])
    assert not os.path.exists(tmp_path / "b.parquet.parts") and not os.path.exists(tmp_path / "b.parquet")


# ---------------------------------------------------------------- 8. the smaller findings

def test_report_md_escapes_html_and_keeps_figures_with_the_same_slug_apart(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from advrobust.report import ReportTable, write_report

    evil = '<img src=x onerror="alert(1)">'
    figures = {}
    for caption, colour in (("dz / model", "red"), ("dz ? model", "blue")):  # one slug, two figures
        fig, ax = plt.subplots()
        ax.set_facecolor(colour)
        figures[caption] = fig
    out = write_report(tmp_path, tables=[ReportTable(f"caption {evil}", {f"model {evil}": {"clean": 0.5}},
                                                     note=evil)],
                       figures=figures, findings=[evil], title=evil, config={"model": "```" + evil})
    md = open(out["markdown"], encoding="utf-8").read()
    assert md.count("````json") == 1  # the config's ``` cannot close its code block
    outside_code = md.split("````json")[0] + md.split("````json")[1].split("\n````\n")[1]
    assert "<img" not in outside_code and outside_code.count("&lt;img src=x") == 5  # title, finding, caption, row, note
    pngs = sorted(f for f in os.listdir(tmp_path / "figures") if f.endswith(".png"))
    assert pngs == ["dz_model.png", "dz_model_2.png"]
    assert open(tmp_path / "figures" / pngs[0], "rb").read() != open(tmp_path / "figures" / pngs[1], "rb").read()
    plt.close("all")


def test_float64_ids_as_values_are_refused_not_rounded():
    from advrobust.data import SurveyDataset

    images = np.zeros((2, 1, 4, 4), dtype=np.float32)
    ids = np.array([1237651191354409216.0, 1237651191354409217.0])
    with pytest.raises(ValueError, match=r"'objid' holds whole numbers beyond 2\*\*24 that float32 would round"):
        SurveyDataset(images, {"objid": ids})
    SurveyDataset(images, {"z_spec": np.array([0.1234567891, 0.5])})  # ordinary values still become float32


def test_scan_refuses_repeated_attacks_and_more_pixels_than_the_stamp_before_any_output(small_survey, tmp_path,
                                                                                        capsys):
    from advrobust.attacks.by_name import check_attack_names
    from tests.cli_runner import run_cli

    with pytest.raises(ValueError, match=r"\['fgsm'\] named twice"):
        check_attack_names(["fgsm", "pgd", "fgsm"])
    args = ["scan", "--model", small_survey / "m.safetensors", "--data", small_survey / "img.npy", "--eps", "0.001",
            "--chunk-size", "8", "--no-progress"]
    code, _, err = run_cli(capsys, *args, "--attacks", "fgsm,fgsm", "--out", tmp_path / "a.parquet")
    assert code == 2 and "['fgsm'] named twice" in err
    code, _, err = run_cli(capsys, *args, "--attacks", "onepixel", "--pixels", "300", "--out", tmp_path / "b.parquet")
    assert code == 1 and "pixels = 300 is more than the 16x16 = 256 pixels" in err
    assert not os.listdir(tmp_path)


def test_attack_settings_that_give_no_attack_are_refused():
    from advrobust.attacks import OnePixel
    from advrobust.attacks.by_name import AttackSettings, make_attack
    from advrobust.metrics import photoz_metrics

    model = models.create("convnet", image_size=8, channels=(4,), kernel_sizes=(3,), latent_dim=8)
    with pytest.raises(ValueError, match="max_iter must be > 0"):
        OnePixel(model, max_iter=0)
    with pytest.raises(ValueError, match="steps must be > 0"):
        make_attack("pgd", model, 0.01, loss="ce", steps=0)
    with pytest.raises(ValueError, match="OnePixel: pixels = 65 is more than the 8x8 pixels"):
        OnePixel(model, pixels=65, population=8, max_iter=2).run(_x(2), torch.tensor([0, 1]))
    for bad in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="threshold"):
            AttackSettings(eps=0.01, threshold=bad)
        with pytest.raises(ValueError, match="threshold"):
            photoz_metrics(np.array([0.1, 0.2]), np.array([0.1, 0.3]), outlier_threshold=bad)


def test_photoz_attacks_refuse_negative_ebv_and_bin_indices_as_redshifts():
    from advrobust.attacks import FGSM, OnePixel

    torch.manual_seed(0)
    model = models.create("photoz_small", image_size=16, in_channels=3)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.01
    z, ebv = torch.tensor([0.2, 0.4]), torch.tensor([0.01, -0.02])
    with pytest.raises(ValueError, match=r"E\(B-V\) \(extra\[0\]\) is negative for 1 samples \[1\]"):
        FGSM(model, eps=0.001, loss="photoz_ce")(x, z, ebv)
    with pytest.raises(TypeError, match="y must hold redshifts .*got torch.int64"):
        OnePixel(model, objective="photoz", population=8, max_iter=2).run(x, torch.tensor([20, 40]),
                                                                          ebv.abs())


def test_training_warns_once_with_counts_for_redshifts_outside_the_bins():
    import warnings

    from advrobust.train import Trainer

    torch.manual_seed(0)
    model = models.create("photoz_small", image_size=16, in_channels=3, z_max=0.4)
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.01
    z = torch.tensor([0.1, 0.2, 0.9, 0.3, 0.1, 1.5, 0.2, 0.3])
    data = TensorDataset(x, z, torch.full((8,), 0.01))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(model, "photoz_ce", progress=False).fit(data, 2, batch_size=8)
    said = [str(w.message) for w in caught if "outside the model's range" in str(w.message)]
    assert len(said) == 1 and "2 of 8 redshifts lie outside the model's range [0, 0.4] (0 below, 2 above" in said[0]


def test_the_full_forward_pass_note_is_said_once_per_process_not_once_per_attack():
    import warnings

    from advrobust.attacks import OnePixel

    class Rel23Upsampler(torch.nn.Module):  # a layer the incremental scorer does not know: it falls back
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 3, padding=1)
            self.rel23_up = torch.nn.Upsample(scale_factor=2)
            self.fc = torch.nn.Linear(2 * 16 * 16, 3)

        def forward(self, x):
            return self.fc(self.rel23_up(self.conv(x)).flatten(1))

    torch.manual_seed(0)
    model = Rel23Upsampler().eval()
    x, y = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for chunk in range(3):  # a scan builds one attack per chunk
            OnePixel(model, population=8, max_iter=2, seed=chunk).run(x, y)
    assert len([w for w in caught if "rel23_up" in str(w.message)]) == 1


def test_a_perturbation_that_overflows_is_refused():
    from advrobust.attacks import uniform_noise
    from advrobust.evaluate.batch import attack_batch

    model = models.create("convnet", image_size=8, channels=(4,), kernel_sizes=(3,), latent_dim=8)
    with pytest.raises(ValueError, match="perturbed images has .*NaN/Inf.*overflowed"):
        attack_batch(model, lambda x, y: uniform_noise(x, 1e38) * 10, _x(2), torch.tensor([0, 1]),
                     task="classifier")


def test_certify_command_refuses_a_nan_model_and_follows_the_nan_policy(small_survey, tmp_path, capsys):
    from tests.cli_runner import run_cli

    model = models.load(small_survey / "m.safetensors")
    with torch.no_grad():
        model.head.bias[0] = float("nan")
    models.save(model, tmp_path / "nan.safetensors")
    images = np.load(small_survey / "img.npy")
    images[3, 0, 2, 2] = np.nan
    np.save(tmp_path / "img.npy", images)
    args = ["certify", "--data", tmp_path / "img.npy", "--sigma", "0.01", "--n0", "10", "--n", "20"]
    code, _, err = run_cli(capsys, *args, "--model", tmp_path / "nan.safetensors", "--out", tmp_path / "a.csv",
                           "--nan-policy", "reject")
    assert code == 1 and "NaN/Inf weights" in err and not os.path.exists(tmp_path / "a.csv")
    good = ["--model", small_survey / "m.safetensors"]
    code, _, err = run_cli(capsys, *args, *good, "--out", tmp_path / "b.csv")
    assert code == 1 and "object 3" in err and "NaN/Inf pixels" in err
    code, out, err = run_cli(capsys, *args, *good, "--out", tmp_path / "c.csv", "--nan-policy", "reject")
    assert code == 0 and "23 objects" in out, err
