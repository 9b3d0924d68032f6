"""A user's own survey from the command line, on real frames (astropy's ``comp.fits``, NGC 1316, cut
into 3-band 24 x 24 integer stamps, tests/real_survey.py): no model-size option, units from the FITS
header, flipped vs misclassified, no dead ends, and every error one line naming its flag."""
import json
import re
import shlex

import numpy as np
import pandas as pd
import pytest

from advrobust import models
from cli_runner import run_cli
from real_survey import write_survey


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    return write_survey(tmp_path_factory.mktemp("real"))


def data_args(survey, *extra):
    return ["--data", survey["data"], "--catalog", survey["catalog"], "--id-column", "objid", *extra]


def train(capsys, survey, out, *extra):
    return run_cli(capsys, "train", "--model", "morphology_small", *data_args(survey), "--target", "label",
                   "--out", out, "--epochs", "1", "--batch-size", "32", "--no-progress", *extra)


@pytest.fixture(scope="module")
def trained(survey, tmp_path_factory):
    """A model trained on the stamps (the module's capsys-free run: main() in-process)."""
    from advrobust.cli import main

    out = tmp_path_factory.mktemp("model") / "m.safetensors"
    main(["train", "--model", "morphology_small", *map(str, data_args(survey)), "--target", "label", "--out",
          str(out), "--epochs", "2", "--batch-size", "32", "--no-progress"])
    return out


def one_line_error(code, err, *needles):
    assert code != 0 and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_train_takes_bands_and_stamp_size_from_the_data(trained):
    model = models.load(trained)
    assert model.config["in_channels"] == 3 and model.config["image_size"] == 24  # recorded in the file
    assert model.config["channels"] == [8, 16, 16]  # the registry's preset kept


def test_model_arg_sets_any_constructor_argument(capsys, survey, tmp_path):
    out = tmp_path / "m.safetensors"
    code, stdout, err = train(capsys, survey, out, "--model-arg", "latent_dim=7", "--model-arg", "channels=[4,4,4]")
    assert code == 0, err
    config = models.load(out).config
    assert config["latent_dim"] == 7 and config["channels"] == [4, 4, 4] and config["image_size"] == 24


@pytest.fixture(scope="module")
def attacked(survey, trained, tmp_path_factory):
    """``attack --n 40`` with labels and --eps-sky 2: its output folder."""
    from advrobust.cli import main

    out = tmp_path_factory.mktemp("attack") / "report"
    main(["attack", "--model", str(trained), *map(str, data_args(survey)), "--target", "label", "--attacks",
          "fgsm,pgd_l2,noise", "--eps-sky", "2", "--n", "40", "--out", str(out)])
    return out


def test_attack_names_flipped_and_misclassified_and_the_file_unit(attacked):
    written = json.loads((attacked / "results.json").read_text())
    assert written["image_unit"] == "counts"  # BUNIT of stamps.fits
    rates = written["outcomes"]
    # clean: nothing flipped, but the labels disagree with some predictions: the two quantities differ
    assert rates["natural"]["flipped"] == 0 and rates["natural"]["misclassified"] > 0
    assert any(r["flipped"] != r["misclassified"] for r in rates.values())
    report = (attacked / "report.md").read_text()
    assert "nanomaggies" not in report and "image units (counts)" in report
    assert "| pgd_l2 (L2 radius over a band's pixels) |" in report  # every radius, with --eps-sky too
    assert len(list((attacked / "figures").glob("*.png"))) == 4


def test_sky_sigma_does_not_depend_on_n(capsys, survey, trained, attacked, tmp_path):
    code, stdout, err = run_cli(capsys, "attack", "--model", trained, *data_args(survey), "--attacks", "noise",
                                "--n", "5", "--out", tmp_path)
    assert code == 0, err
    assert "3-sigma-clipped" in stdout  # the method is stated
    sky = json.loads((tmp_path / "results.json").read_text())["sky_sigma"]
    assert sky == json.loads((attacked / "results.json").read_text())["sky_sigma"]  # as with --n 40


def test_unit_is_image_units_without_bunit_or_the_flag(capsys, trained, tmp_path):
    bare = write_survey(tmp_path, unit=None, n=30)
    code, stdout, err = run_cli(capsys, "certify", "--model", trained, *data_args(bare), "--sigma", "2", "--n0", "4",
                                "--n", "8", "--out", tmp_path / "c.csv")
    assert code == 0 and "sigma 2 image units = [" in stdout, err
    code, stdout, err = run_cli(capsys, "attack", "--model", trained, *data_args(bare), "--attacks", "noise",
                                "--out", tmp_path / "r", "--unit", "ADU")
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "results.json").read_text())["image_unit"] == "ADU"
    assert "] ADU" in stdout and "nanomaggies" not in (tmp_path / "r" / "report.md").read_text()


def test_certify_and_scan_on_the_stamps(capsys, survey, trained, tmp_path):
    code, stdout, err = run_cli(capsys, "certify", "--model", trained, *data_args(survey), "--target", "label",
                                "--sigma", "2", "--n0", "10", "--n", "40", "--out", tmp_path / "c.csv")
    assert code == 0, err
    assert "sigma 2 counts = [" in stdout and len(pd.read_csv(tmp_path / "c.csv")) == len(survey["images"])
    code, stdout, err = run_cli(capsys, "scan", "--model", trained, "--data", survey["data"], "--attacks",
                                "fgsm,noise", "--out", tmp_path / "s.parquet", "--no-progress")
    assert code == 0, err
    table = pd.read_parquet(tmp_path / "s.parquet")
    assert len(table) == len(survey["images"])
    assert (table["fgsm_flipped"] == (table["fgsm_class"] != table["class"])).all()


def test_a_failed_run_does_not_block_the_corrected_one(capsys, survey, tmp_path):
    out = tmp_path / "m.safetensors"
    code, _, err = run_cli(capsys, "train", "--model", "convnet", *data_args(survey), "--target", "label",
                           "--out", out, "--model-arg", "channels=[4,4,4,4,4]",
                           "--model-arg", "kernel_sizes=[3,3,3,3,3]", "--no-progress")
    one_line_error(code, err, "--model convnet cannot take the stamps of --data", "too small for 5 2x2 pools")
    code, _, err = train(capsys, survey, out, "--batch-size", "0")  # fails in the first epoch
    assert code == 1 and not (tmp_path / "m.safetensors.checkpoint").exists()
    assert (tmp_path / "m.safetensors.checkpoint.json").exists()  # its options, with other values than the next
    code, stdout, err = train(capsys, survey, out)  # the corrected command
    assert code == 0 and "epochs 1-1 of 1" in stdout, err


def test_a_checkpoint_of_other_options_names_restart(capsys, survey, tmp_path):
    out = tmp_path / "m.safetensors"
    assert train(capsys, survey, out)[0] == 0
    code, _, err = train(capsys, survey, out, "--lr", "0.01")
    one_line_error(code, err, "other options", "lr: was 0.001, now 0.01", "--restart")
    code, stdout, err = train(capsys, survey, out, "--lr", "0.01", "--restart")
    assert code == 0 and "epochs 1-1 of 1" in stdout and "resumed" not in stdout, err


def test_errors_name_the_flags(capsys, survey, trained, tmp_path):
    from astropy.io import fits

    base = ["attack", "--model", trained, "--attacks", "noise", "--out", tmp_path / "r"]
    # a catalogue with an id column is not joined by position unless the flag says so
    code, _, err = run_cli(capsys, *base, "--data", survey["data"], "--catalog", survey["catalog"], "--target", "label")
    one_line_error(code, err, "--id-column objid", "--join-by-position")
    # a 2-D image: the layout and how to get it
    fits.writeto(tmp_path / "frame.fits", survey["images"][0, 0])
    code, _, err = run_cli(capsys, *base, "--data", tmp_path / "frame.fits")
    one_line_error(code, err, "(N, C, H, W)", "cut it into stamps")
    # missing values in the catalogue: the flag, in a form argparse takes
    catalog = pd.read_csv(survey["catalog"]).assign(label=lambda t: np.where(t.index < 3, -99, t["label"]))
    catalog.to_csv(tmp_path / "missing.csv", index=False)
    code, _, err = run_cli(capsys, *base, *data_args(survey)[:2], "--catalog", tmp_path / "missing.csv",
                           "--id-column", "objid", "--target", "label")
    one_line_error(code, err, "--missing-values=-99", "--nan-policy reject")
    code, stdout, err = run_cli(capsys, *base, *data_args(survey)[:2], "--catalog", tmp_path / "missing.csv",
                                "--id-column", "objid", "--target", "label", "--missing-values=-99",
                                "--nan-policy", "reject")
    assert code == 0 and f"{len(survey['images']) - 3} objects" in stdout, err
    # a NaN pixel: scan names --nan-policy (and it is accepted)
    images = survey["images"].astype(np.float32)
    images[4, 1, 3, 3] = np.nan
    np.save(tmp_path / "nan.npy", images)
    scan = ["scan", "--model", trained, "--data", tmp_path / "nan.npy", "--attacks", "noise", "--no-progress"]
    code, _, err = run_cli(capsys, *scan, "--out", tmp_path / "a.parquet")
    one_line_error(code, err, "--nan-policy reject")
    code, _, err = run_cli(capsys, *scan, "--out", tmp_path / "b.parquet", "--nan-policy", "reject")
    assert code == 0 and len(pd.read_parquet(tmp_path / "b.parquet")) == len(images) - 1, err
    # a model argument that is not NAME=VALUE, or that the constructor does not take
    code, _, err = train(capsys, survey, tmp_path / "m.safetensors", "--model-arg", "latent_dim")
    assert code == 2 and "--model-arg: expected NAME=VALUE" in err
    code, _, err = train(capsys, survey, tmp_path / "m.safetensors", "--model-arg", "depth=3")
    one_line_error(code, err, "--model-arg", "depth")
    # stamps that are not square, for a model that takes an image_size
    np.save(tmp_path / "wide.npy", survey["images"][:, :, :, :20])
    code, _, err = run_cli(capsys, "train", "--model", "morphology_small", "--data", tmp_path / "wide.npy",
                           "--catalog", survey["catalog"], "--join-by-position", "--target", "label",
                           "--out", tmp_path / "w.safetensors", "--no-progress")
    one_line_error(code, err, "--model morphology_small takes square stamps; --data has 24x20 pixels")
    for python_spelling in ("id_column=", "nan_policy=", "missing_values=", "join_by_position="):
        assert python_spelling not in err


def _readme_section():
    import os

    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()
    start = readme.index("## Your own survey")
    return readme[start:readme.index("\n## ", start)]


def test_the_readme_walkthrough_runs(capsys, tmp_path, monkeypatch):
    """Every command of README's "Your own survey", as written: the Python that makes the files
    from astropy's frame, then each `advrobust` command."""
    section = _readme_section()
    python = re.findall(r"```python\n(.*?)```", section, re.S)
    shell = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert len(python) == 1 and len(shell) == 1
    monkeypatch.chdir(tmp_path)
    exec(compile(python[0], "README.md", "exec"), {})
    commands = [line for line in shell[0].replace("\\\n", " ").splitlines() if line.strip()]
    assert [shlex.split(c)[1] for c in commands] == ["train", "attack", "certify", "scan"]
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "advrobust"
        code, stdout, err = run_cli(capsys, *argv[1:])
        assert code == 0, (command, err)
    assert (tmp_path / "report" / "report.md").exists() and (tmp_path / "scan.parquet").exists()
    assert json.loads((tmp_path / "report" / "results.json").read_text())["image_unit"] == "counts"
    assert len(pd.read_csv(tmp_path / "certificates.csv")) == 216


@pytest.mark.parametrize("command", ["attack", "certify", "scan", "train"])
def test_every_flag_a_message_may_name_exists(command):
    """advrobust.cli.data.FLAGS maps library arguments to flags: each must be a flag of the command
    (else a message would advise an option the command does not have)."""
    import importlib

    from advrobust.cli.data import FLAGS

    parser = importlib.import_module(f"advrobust.cli.{command}").build_parser(f"advrobust {command}")
    flags = {f for action in parser.options.values() for f in action.option_strings}
    assert set(FLAGS.values()) <= flags


def test_option_spells_values_as_the_command_line_takes_them():
    from advrobust.options import option, spelled_as

    assert option("key", "<HDU name>") == "key=<HDU name>" and option("key", "a") == "key='a'"
    with spelled_as({"key": "--key", "missing_values": "--missing-values", "join_by_position": "--join-by-position"}):
        assert option("key", "<HDU name>") == "--key <HDU name>"
        assert option("missing_values", (-99,), flag_value="-99") == "--missing-values=-99"  # not an option
        assert option("join_by_position", True, flag_value="") == "--join-by-position"  # a switch
