"""The `advrobust` command line and the benchmark harness, on smoke sizes (seconds, never a timed test)."""
import re
import sys
from pathlib import Path

import pytest
import torch

import advrobust
from advrobust.bench import harness
from advrobust.cli import COMMANDS, main
from cli_runner import run_cli


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_help_lists_the_commands(capsys):
    code, out, _ = run_cli(capsys, "-h")
    assert code == 0
    assert all(name in out for name in COMMANDS) and "bench" in out


@pytest.mark.parametrize("argv", [("bench", "-h"), ("bench", "ops", "-h"), ("bench", "attacks", "-h")])
def test_bench_help(capsys, argv):
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0
    assert "--device" in out or "attacks" in out
    assert "usage: advrobust " + " ".join(a for a in argv if a != "-h") in out


def test_unknown_command_and_no_command_exit_2(capsys):
    code, _, err = run_cli(capsys, "frobnicate")
    assert code == 2
    assert "unknown command 'frobnicate'" in err and "bench" in err
    code, _, err = run_cli(capsys)
    assert code == 2 and "usage: advrobust" in err


@pytest.mark.skipif(not advrobust.has_cpu_kernels(), reason="advrobust._C is not built")
def test_bench_ops_quick_report(capsys, tmp_path):
    out = tmp_path / "ops.md"
    argv = ("bench", "ops", "--quick", "--no-compile", "--skip-mmd", "--device", "cpu", "--out", str(out))
    code, stdout, _ = run_cli(capsys, *argv)
    assert code == 0 and f"wrote {out}" in stdout
    report = out.read_text()
    assert report.startswith("# advrobust kernel benchmarks (CPU)")
    assert "- machine: " in report and f"torch {torch.__version__}" in report
    assert "- command: `advrobust bench " + " ".join(argv[1:]) + "`" in report
    for row in ("| linf_step | 8x3x16x16 |", "| l2_step | 8x3x16x16 |", "| de_build | B=4 P=50 k=1 3x20x20 |",
                "| de_trial | B=4 P=50 D=5 |"):
        assert row in report
    assert "Copy bandwidth" in report and "MMD" not in report


def test_bare_bench_means_bench_ops(capsys, monkeypatch):
    from advrobust.bench import ops
    seen = {}
    monkeypatch.setattr(ops, "run", lambda args, command: seen.update(args=args, command=command))
    code, _, _ = run_cli(capsys, "bench", "--quick", "--skip-mmd")
    assert code == 0 and seen["command"] == "advrobust bench ops --quick --skip-mmd"
    assert seen["args"].quick and seen["args"].skip_mmd and not seen["args"].no_compile


@pytest.mark.skipif(not advrobust.has_cpu_kernels(), reason="advrobust._C is not built")
def test_mmd_case_runs_in_a_child_process():
    from advrobust.bench import ops
    row = ops.run_mmd_case_in_child("kernel", 32, 8, 5, 2, torch.device("cpu"), timeout=120)
    assert "error" not in row, row
    assert row["min_s"] <= row["median_s"] <= row["max_s"] and row["repeats"] == 2 and row["peak_extra_mib"] >= 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
@pytest.mark.parametrize("suite", ["ops", "attacks"])
def test_device_cuda_without_cuda_is_a_clear_error(capsys, suite):
    code, _, err = run_cli(capsys, "bench", suite, "--device", "cuda")
    assert code == 2
    assert "no CUDA device is visible" in err and "Traceback" not in err


def test_default_report_path(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert harness.default_out("RESULTS.md", quick=False) == "advrobust_RESULTS.md"
    checkout = Path(advrobust.__file__).resolve().parent.parent
    if (checkout / "bench").is_dir() and (checkout / "setup.py").is_file():
        monkeypatch.chdir(checkout)
        assert harness.default_out("RESULTS.md", quick=False) == str(checkout / "bench" / "RESULTS.md")
        assert harness.default_out("RESULTS.md", quick=True) == str(checkout / "bench" / "out" / "RESULTS.md")


def test_bench_attacks_without_torchattacks_says_how_to_install(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchattacks", None)  # import torchattacks -> ImportError
    code, _, err = run_cli(capsys, "bench", "attacks", "--quick", "--device", "cpu")
    assert code == 1
    assert "pip install --no-deps torchattacks" in err


@pytest.mark.slow
def test_bench_attacks_smoke(capsys, tmp_path):
    torchattacks = pytest.importorskip("torchattacks", reason="the attack benchmark compares against torchattacks")
    out = tmp_path / "attacks.md"
    code, _, _ = run_cli(capsys, "bench", "attacks", "--quick", "--device", "cpu", "--n-grad", "1", "--n-onepixel", "1",
                         "--onepixel-iters", "1", "--population", "8", "--train-steps", "1", "--n-test", "8",
                         "--out", str(out))
    assert code == 0
    report = out.read_text()
    assert report.startswith("# advrobust.attacks vs torchattacks (CPU)")
    assert f"- torchattacks {torchattacks.__version__}" in report and "- machine: " in report
    for row in ("| FGSM | advrobust |", "| PGD-Linf-10 | torchattacks |", "| PGD-L2-10 | advrobust |",
                "| 1 | 1 | advrobust |", "| 1 | 1 | torchattacks |"):
        assert row in report


def test_command_errors_are_one_line_and_debug_shows_the_traceback(capsys, monkeypatch):
    import types

    boom = types.ModuleType("advrobust.cli.boom")

    class Parser:  # the protocol's parser: parse_args(argv) -> args (here the argv itself)
        def parse_args(self, argv):
            return argv

    def failing_run(args, prog):
        raise ValueError(f"data.h5: no dataset 'images'\n  (keys: a, b) {args}")

    boom.build_parser = lambda prog: Parser()
    boom.run = failing_run
    monkeypatch.setitem(sys.modules, "advrobust.cli.boom", boom)
    monkeypatch.setitem(COMMANDS, "boom", "fails")
    code, out, err = run_cli(capsys, "boom", "--x")
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [
        "advrobust boom: error: data.h5: no dataset 'images' (keys: a, b) ['--x'] (ValueError; --debug for the traceback)"]
    with pytest.raises(ValueError, match="no dataset"):
        main(["boom", "--debug"])


def test_check_device_is_the_one_device_check():
    from advrobust.checks import check_device

    assert check_device("--device", "cpu") == torch.device("cpu")
    assert check_device("run_demo: device", torch.device("cpu")) == torch.device("cpu")
    for bad in ("gpu", "mps", "cuda:x"):
        with pytest.raises(ValueError, match=rf"^--device must be cpu, cuda or cuda:N, got '{bad}'$"):
            check_device("--device", bad)
    if not torch.cuda.is_available():
        for name in ("cuda", "cuda:0"):
            with pytest.raises(ValueError, match=rf"^run_demo: device {name}: no CUDA device is visible"):
                check_device("run_demo: device", name)
    else:
        with pytest.raises(ValueError, match="CUDA device\\(s\\) are visible"):
            check_device("--device", f"cuda:{torch.cuda.device_count()}")


def test_command_parser_config_follows_the_recorded_options(tmp_path):
    """--config keys are checked against the options as added (flags, types, choices, exclusive groups)."""
    from advrobust.cli.argtypes import floats
    from advrobust.cli.parser import CommandParser

    def parser():
        p = CommandParser("advrobust t", required=("n",))
        p.add_argument("--n", type=int)
        group = p.add_argument_group("g")
        group.add_argument("--flag", action="store_true")
        group.add_argument("--lo", type=floats)
        group.add_argument("--mode", default="a", choices=("a", "b"))
        either = group.add_mutually_exclusive_group()
        either.add_argument("--x", type=float)
        either.add_argument("--y", type=float, default=2.0)
        return p

    config = tmp_path / "c.toml"
    config.write_text("n = 3\nflag = true\nlo = [1, 2.5]\nx = 1\n")
    args = parser().parse_args(["--config", str(config)])
    assert (args.n, args.flag, args.lo, args.mode, args.x, args.y) == (3, True, [1.0, 2.5], "a", 1.0, 2.0)
    assert args.config == str(config) and args.config_tables == {}
    args = parser().parse_args(["--config", str(config), "--y", "4", "--n", "5"])
    assert (args.n, args.x, args.y) == (5, None, 4.0)  # --y on the command line drops the config's x
    assert parser().parse_args(["--n", "1"]).config is None
    for text, message in [("flag = 1\n", "key 'flag' must be true or false"),
                          ("mode = 'c'\n", "key 'mode' must be one of a, b"),
                          ("x = 1\ny = 2\n", "keys ['x', 'y'] exclude each other"),
                          ("z = 1\n", "unknown key 'z'; the keys are: flag, lo, mode, n, x, y")]:
        config.write_text(text)
        with pytest.raises(ValueError, match=re.escape(message)):
            parser().parse_args(["--config", str(config), "--n", "1"])
    with pytest.raises(SystemExit):
        parser().parse_args([])  # --n is required (command line or config)
