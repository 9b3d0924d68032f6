"""advrobust scan --certify-radii: the certification columns equal certify_adaptive (classifier) and
SmoothRegression.certify (photo-z) with the scan's certification seeds; bad flags give one line."""
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from advrobust import models
from advrobust.data import save_arrays, simulate_photoz
from advrobust.defenses import Smooth, SmoothRegression
from advrobust.scan import plan_chunks
from advrobust.scan.certification import scan_certify_seed
from cli_runner import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")
N, CHUNK = 10, 4


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scan_certify")
    torch.manual_seed(0)
    models.save(models.create("morphology_small", image_size=32), folder / "cls.safetensors")
    torch.manual_seed(1)
    models.save(models.create("photoz_small"), folder / "pz.safetensors")
    rng = np.random.default_rng(0)
    np.save(folder / "images.npy", (rng.normal(0, 1e-3, (N, 3, 32, 32)) + 0.02).astype(np.float32))
    photoz = simulate_photoz(N, seed=2)
    save_arrays(folder / "photoz.npz", {"images": photoz["images"], "ebv": photoz["ebv"]})
    return folder


def scan_args(model, data, out, *extra):
    return ["scan", "--model", model, "--data", data, "--attacks", "noise", "--eps", "0.002",
            "--chunk-size", str(CHUNK), "--batch-size", "32", "--no-progress", "--seed", "2", "--out", out, *extra]


def test_classifier_certification_columns_equal_certify_adaptive(survey, tmp_path, capsys):
    out = tmp_path / "cat.parquet"
    code, _, err = run_cli(capsys, *scan_args(survey / "cls.safetensors", survey / "images.npy", out,
                                              "--certify-radii", "0,0.001", "--certify-sigma", "0.002",
                                              "--certify-n-max", "200", "--certify-alpha", "0.01"))
    assert code == 0, err
    cat = pq.read_table(out).to_pandas()
    assert "noise_class" in cat  # the attack columns are still there
    smooth = Smooth(models.load(survey / "cls.safetensors"), 3, 0.002)
    x = torch.from_numpy(np.load(survey / "images.npy"))
    for chunk in plan_chunks(N, CHUNK):
        cert = smooth.certify_adaptive(x[chunk.start:chunk.stop], [0, 0.001], alpha=0.01, n_max=200, batch_size=32,
                                       generator=torch.Generator().manual_seed(scan_certify_seed(2, chunk)))
        rows = cat.iloc[chunk.start:chunk.stop]
        assert rows["certify_prediction"].tolist() == cert.prediction.tolist()
        assert rows["certify_samples"].tolist() == cert.samples.tolist()
        assert rows["certify_certified_at_0"].tolist() == cert.certified[:, 0].tolist()
        assert rows["certify_certified_at_0.001"].tolist() == cert.certified[:, 1].tolist()


def test_photoz_certification_columns_equal_smooth_regression(survey, tmp_path, capsys):
    out = tmp_path / "pz.parquet"
    code, _, err = run_cli(capsys, *scan_args(survey / "pz.safetensors", survey / "photoz.npz", out, "--key", "images",
                                              "--certify-radii", "0.005", "--certify-sigma", "0.01",
                                              "--certify-n", "40", "--certify-alpha", "0.1"))
    assert code == 0, err
    cat = pq.read_table(out).to_pandas()
    data = np.load(survey / "photoz.npz")
    smoother = SmoothRegression(models.load(survey / "pz.safetensors"), 0.01)
    for chunk in plan_chunks(N, CHUNK):
        s = slice(chunk.start, chunk.stop)
        cert = smoother.certify(torch.from_numpy(data["images"][s]), 0.005, torch.from_numpy(data["ebv"][s]),
                                alpha=0.1, n=40, batch_size=32,
                                generator=torch.Generator().manual_seed(scan_certify_seed(2, chunk)))
        for name in ("median", "lo", "hi", "samples"):
            np.testing.assert_array_equal(cat[f"certify_{name}"].iloc[s], getattr(cert, name).numpy())
    assert np.isfinite(cat["certify_lo"]).all() and (cat["certify_lo"] <= cat["certify_hi"]).all()


def test_scan_without_certification_has_no_certify_columns_nor_manifest_key(survey, tmp_path, capsys):
    import json

    out = tmp_path / "plain.parquet"
    assert run_cli(capsys, *scan_args(survey / "cls.safetensors", survey / "images.npy", out))[0] == 0
    assert not [c for c in pq.read_schema(out).names if c.startswith("certify_")]
    with open(str(out) + ".parts/manifest.json") as handle:
        assert "certify" not in json.load(handle)


@pytest.mark.parametrize("model, extra, message", [
    ("cls", ("--certify-radii", "0.1"), "--certify-sigma: give the smoothing noise"),
    ("cls", ("--certify-sigma", "0.1"), "--certify-sigma needs --certify-radii"),
    ("cls", ("--certify-radii", "0.1,-0.1", "--certify-sigma", "0.1"), "--certify-radii: a classifier is certified"),
    ("pz", ("--certify-radii", "0.1,0.2", "--certify-sigma", "0.1"), "--certify-radii: a photo-z model is certified "
                                                                     "at one radius"),
])
def test_bad_certify_flags_are_one_line_naming_the_flag(survey, tmp_path, capsys, model, extra, message):
    data = survey / ("photoz.npz" if model == "pz" else "images.npy")
    key = ("--key", "images") if model == "pz" else ()
    code, _, err = run_cli(capsys, *scan_args(survey / f"{model}.safetensors", data, tmp_path / "c.parquet",
                                              *key, *extra))
    assert code == 2 and message in err, err
    assert not (tmp_path / "c.parquet").exists()


def test_certified_accuracy_at_counts_correct_and_certified_objects():
    from advrobust.scan.certification import certified_accuracy_at

    rng = np.random.default_rng(0)
    certified = rng.random((50, 3)) < 0.6
    prediction, labels = rng.integers(-1, 3, 50), rng.integers(0, 3, 50)
    expected = [sum(bool(certified[i, j]) and prediction[i] == labels[i] for i in range(50)) / 50 for j in range(3)]
    np.testing.assert_allclose(certified_accuracy_at(certified, prediction, labels), expected)
    with pytest.raises(ValueError, match="certified"):
        certified_accuracy_at(certified[:, 0], prediction, labels)


@pytest.mark.parametrize("task, settings, message", [
    ("classifier", dict(radii=()), "distinct L2 radii"),
    ("classifier", dict(radii=(0.1, 0.1000000001)), "distinct L2 radii"),
    ("photoz", dict(radii=(0.1,)), "one L2 radius >= 0: radius is None"),
    ("regression", dict(radius=0.1), "task must be"),
])
def test_certify_settings_refuse_what_does_not_fit_the_task(task, settings, message):
    from advrobust.scan.certification import CertifySettings

    with pytest.raises(ValueError, match=message):
        CertifySettings(sigma=0.1, **settings).check(task)
