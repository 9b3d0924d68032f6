"""The GPU check's CPU-side parts: its preflight refuses without a GPU, its report writer turns a
saved pytest-benchmark JSON into bench/RESULTS_cuda.md with the right ratios (hand-computed here)."""
import json
import subprocess
from pathlib import Path

import pytest
import torch

from advrobust.bench import cuda_report

INFO = {"device": "cuda", "gpu": "NVIDIA Test GPU", "gpu_mem_gib": 80.0, "cuda": "12.4", "torch": "2.13.0",
        "python": "3.11.7", "commit": "abc1234", "date": "2026-12-02 07:00 UTC", "cpu": "Test CPU", "cores": 16,
        "threads": 16, "tier": "full", "command": "pytest bench --benchmark-only --bench-device cuda"}


def bench(group, impl, median, **extra):
    return {"group": group, "name": f"test[{impl}]", "extra_info": {"impl": impl, **extra},
            "stats": {"median": median, "min": median, "max": median, "mean": median}}


def saved_run(path, benchmarks, info=INFO):
    path.write_text(json.dumps({"machine_info": {"advrobust": info}, "benchmarks": benchmarks, "advrobust": info}))
    return str(path)


@pytest.fixture
def run_json(tmp_path):
    g = "linf_step 64x5x64x64"
    return saved_run(tmp_path / "run.json", [
        bench(g, "kernel", 2e-4, traffic_bytes=4000), bench(g, "copy", 1e-4, traffic_bytes=2000),
        bench(g, "eager", 1e-3, traffic_bytes=4000), bench(g, "compiled", 4e-4, traffic_bytes=4000),
        bench(g, "direct call", 2.2e-4, traffic_bytes=4000),
        bench("de_trial B=64 P=400 D=5", "kernel", 1e-3), bench("de_trial B=64 P=400 D=5", "eager", 5e-3),
        bench("PGD-Linf-10 8 images", "advrobust", 0.5, objects=8),
        bench("PGD-Linf-10 8 images", "torchattacks", 1.0, objects=8),
        bench("PGD-Linf-10 8 images", "model fwd+bwd loop", 0.4, objects=8),
        bench("scan 64 objects", "scan", 2.0, objects=64, scan_model_passes={"forward": 2, "forward+backward": 10}),
        bench("scan 64 objects", "forward", 0.05, objects=64),
        bench("scan 64 objects", "forward+backward", 0.1, objects=64),
        {"group": None, "name": "test_other", "extra_info": {}, "stats": {"median": 1.0}},  # not a bench/ suite
    ])


def row(lines, start):
    (line,) = [l for l in lines if l.startswith(start)]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_report_ratios_from_a_saved_run(run_json):
    lines = cuda_report.report([run_json], driver="550.54", tests_text="3 passed in 1.0s")
    text = "\n".join(lines)
    assert lines[0] == "# advrobust on NVIDIA Test GPU: the GPU check"
    assert "driver 550.54; CUDA 12.4" in text and "commit abc1234" in text and "3 passed in 1.0s" in text
    # kernel 4000 B / 0.2 ms = 20 MB/s; copy 2000 B / 0.1 ms = 20 MB/s: 100 % of copy; compiled: 50 %
    assert row(lines, "| linf_step 64x5x64x64") == ["linf_step 64x5x64x64", "0.200", "0.220", "1.000", "0.400",
                                                    "5.00x", "2.00x", "0.0", "100%", "50%"]
    assert row(lines, "| de_trial")[5:] == ["5.00x", "—", "—", "—", "—"]
    assert row(lines, "| PGD-Linf-10 8 images | advrobust") == ["PGD-Linf-10 8 images", "advrobust", "500.000",
                                                                 "16.0", "2.00x", "0.80x"]
    # model-bound: 2 x 50 ms + 10 x 100 ms = 1100 ms of the scan's 2000 ms
    assert row(lines, "| scan 64 objects") == ["scan 64 objects", "2000.000", "32.0", "1100.000", "55%"]
    assert "OnePixel" not in text  # no such group in this run: no empty section
    cpu = cuda_report.header_lines({**INFO, "device": "cpu"}, "unknown", ["x.json"])
    assert cpu[0] == "# advrobust benchmarks on the CPU (Test CPU)" and not any("GPU" in l for l in cpu)


def test_report_command_writes_the_file(run_json, tmp_path, capsys):
    out = tmp_path / "RESULTS_cuda.md"
    assert cuda_report.main(["report", "--json", run_json, "--driver", "1.0", "--out", str(out)]) == 0
    assert out.read_text().startswith("# advrobust on NVIDIA Test GPU") and f"wrote {out}" in capsys.readouterr().out


def test_report_refuses_missing_or_foreign_files(tmp_path, capsys):
    assert cuda_report.main(["report", "--json", str(tmp_path / "none.json"), "--out", str(tmp_path / "r.md")]) == 2
    assert "no such benchmark JSON" in capsys.readouterr().err
    other, empty = tmp_path / "other.json", tmp_path / "empty.json"
    other.write_text("{}")
    empty.write_text("")
    with pytest.raises(ValueError, match="not a pytest-benchmark JSON"):
        cuda_report.load_runs([str(other)])
    with pytest.raises(ValueError, match="not JSON .*stopped early"):
        cuda_report.load_runs([str(empty)])
    assert cuda_report.main(["report", "--json", str(empty), "--out", str(tmp_path / "r.md")]) == 2
    assert "no readable benchmark JSON" in capsys.readouterr().err


def test_report_leaves_out_an_unreadable_file_and_says_so(run_json, tmp_path, capsys):
    empty, out = tmp_path / "empty.json", tmp_path / "r.md"
    empty.write_text("")
    assert cuda_report.main(["report", "--json", str(empty), run_json, "--driver", "1", "--out", str(out)]) == 0
    assert f"left out: {empty}: not JSON" in capsys.readouterr().err and "linf_step 64x5x64x64" in out.read_text()


def test_report_needs_its_arguments(capsys):
    with pytest.raises(SystemExit):
        cuda_report.parse_args(["report", "--out", "x.md"])
    assert "--json" in capsys.readouterr().err


def test_preflight_refuses_without_a_gpu(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    assert cuda_report.main(["preflight"]) == 2
    assert "refused: no CUDA GPU is visible" in capsys.readouterr().err
    monkeypatch.setattr(torch.version, "cuda", None)
    assert cuda_report.main(["preflight"]) == 2
    assert "built without CUDA" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    assert cuda_report.main(["preflight"]) == 0
    monkeypatch.setattr(cuda_report, "missing_tools", lambda: ["pytest-benchmark is not installed"])
    assert cuda_report.main(["preflight"]) == 2
    assert "refused: pytest-benchmark is not installed" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")
def test_gpu_check_script_refuses_here():
    res = subprocess.run(["bash", "scripts/gpu_check.sh"], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent)
    assert res.returncode == 2 and "gpu_check: refused" in res.stderr
