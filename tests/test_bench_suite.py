"""The pytest-benchmark suites in bench/ cannot rot: they collect, every case list is shared with
``advrobust bench``, one tiny case runs and saves its JSON with advrobust's machine info, and an
unusable device is refused with the reason."""
import importlib.util
import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

from advrobust.bench import cases

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not (ROOT / "bench" / "conftest.py").is_file(),
                                reason="bench/ is not in this checkout")


def run_pytest(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_select_picks_a_tier_and_refuses_an_unknown_one():
    assert [c.shape for c in cases.select(cases.STEPS, "default")] == [(64, 5, 64, 64)]
    assert [c.shape for c in cases.select(cases.STEPS, "full")] == [(64, 5, 64, 64), (256, 3, 100, 100)]
    with pytest.raises(ValueError, match="unknown benchmark tier 'huge'"):
        cases.select(cases.STEPS, "huge")


def test_every_tier_has_a_case_of_every_family():
    for tier in cases.TIERS:
        for family in (cases.STEPS, cases.DE_BUILDS, cases.DE_TRIALS, cases.MMDS, cases.CERTIFY, cases.SCANS):
            assert cases.select(family, tier), (tier, family)
        assert set(cases.ATTACK_SIZES[tier]) == {"n_grad", "n_onepixel", "population", "iters", "train_steps",
                                                 "n_test"}


def test_the_command_line_certifies_the_shared_cases():
    from advrobust.bench import defenses
    full, quick = defenses.SIZES["certify"]
    assert full == [(c.n0, c.n, c.batch) for c in cases.select(cases.CERTIFY, "full")]
    assert quick == [(c.n0, c.n, c.batch) for c in cases.select(cases.CERTIFY, "quick")]


@pytest.mark.slow  # a fresh pytest importing torch and the package: ~10 s alone, a minute on a busy machine
def test_the_suites_collect_and_one_tiny_case_runs_and_saves_its_machine_info(tmp_path):
    """Every suite module is collected (a collection error fails the run), one case is run."""
    out = tmp_path / "run.json"
    res = run_pytest("bench", "--benchmark-only", "--bench-tier", "quick", "--bench-device", "cpu",
                     "--bench-threads", "1", "-k", "test_step_copy and linf", "--benchmark-max-time", "0.01",
                     "--benchmark-min-rounds", "3", f"--benchmark-json={out}")
    assert res.returncode == 0, res.stdout + res.stderr
    collected = int(re.search(r"collected (\d+) items", res.stdout).group(1))
    assert collected >= 30 and "1 passed" in res.stdout, res.stdout  # ops, attacks, certify, scan cases
    data = json.loads(out.read_text())
    (bench,) = data["benchmarks"]
    assert bench["group"] == "linf_step 8x3x16x16" and bench["extra_info"]["impl"] == "copy"
    assert bench["extra_info"]["traffic_bytes"] == 2 * 8 * 3 * 16 * 16 * 4
    info = data["machine_info"]["advrobust"]
    assert info["device"] == "cpu" and info["threads"] == 1 and info["tier"] == "quick"
    assert {"torch", "commit", "cpu", "command"} <= set(info) and data["advrobust"]["threads"] == 1


def load_bench_conftest():
    spec = importlib.util.spec_from_file_location("bench_conftest", ROOT / "bench" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Options:
    """A stand-in for pytest's config: only getoption."""

    def __init__(self, **options):
        self.options = options

    def getoption(self, name):
        return self.options[name]


def test_an_unusable_device_is_refused_with_the_reason(monkeypatch):
    import torch
    conftest = load_bench_conftest()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(pytest.UsageError, match="^--bench-device cuda: no CUDA device is visible"):
        conftest.bench_device(Options(**{"--bench-device": "cuda"}))
    assert conftest.bench_device(Options(**{"--bench-device": "cpu"})).type == "cpu"
