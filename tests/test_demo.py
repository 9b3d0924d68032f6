"""``advrobust demo --quick`` end to end: the report holds every table and figure, the printed headline
is the report's, paper values sit only in columns labelled with the paper, and the saved model
reproduces the report's clean photo-z numbers on the re-simulated test set."""
import os
import re

import pytest
import torch

from advrobust import cli, models
from advrobust.data import simulate_morphology, simulate_photoz
from advrobust.defenses import interval_bounds, log_volume
from advrobust.demo import PRESETS, run_demo
from advrobust.demo.defenses import INPUTS, MODELS, PAPER_TABLE_1
from advrobust.metrics import pdf_metrics, photoz_metrics
from advrobust.machine import cpu_model

pytestmark = pytest.mark.slow  # the quick demo itself: about a minute


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo("quick", out=out, seed=0, progress=False)


def test_report_holds_every_table_and_figure(demo):
    out, result = demo
    markdown = open(result["report"]["markdown"], encoding="utf-8").read()
    html = open(result["report"]["html"], encoding="utf-8").read()
    titles = re.findall(r"^\*\*(.+)\*\*$", markdown, flags=re.M)
    expected_tables = ("Photo-z on the held-out test set", "Photo-z under perturbation", "p.d.f. under attack",
                       "Point metrics: Campagne 2021 beside RAIL",
                       "Morphology: accuracy on Y10", "Morphology: one-pixel attack", "Randomized smoothing",
                       "Adaptive certification", "Certified photo-z", "Defenses (cf. Mallam Garba, Susini and Kayo",
                       "Sensitivity (Wang et al. 2018)")
    for table in expected_tables:
        assert any(t.startswith(table) for t in titles), (table, titles)
    pngs = [p for p in result["report"]["figures"] if p.endswith(".png")]
    # photo-z: 2 comparisons + 1 perturbation + per model PIT histograms and n(z) + certified intervals;
    # morphology: 2 isomaps, histograms, church window, certified accuracy (fixed n; adaptive vs fixed)
    assert len(pngs) == 14
    for model in ("baseline", "adversarial training"):
        assert any(os.path.basename(p).startswith(f"PIT_histograms_{model.replace(' ', '_')}") for p in pngs)
        assert any(os.path.basename(p).startswith(f"n_z_of_{model.replace(' ', '_')}") for p in pngs)
    for png in pngs:
        assert os.path.getsize(png) > 5_000
        assert os.path.basename(png) in markdown
    assert html.count("data:image/png;base64,") == len(pngs)
    for stage in ("photo-z: train baseline", "morphology: one-pixel attack"):
        assert any(k.startswith(stage) for k in result["timings"]), stage
    assert markdown.count("| total |") == 1
    defenses = [f"morphology_defenses_{m}" for m in MODELS if m != "smoothing"]  # quick: all trained on a subset
    for name in ("photoz_baseline", "photoz_adversarial", "morphology_baseline", "morphology_mmd", "morphology_noisy",
                 "morphology_baseline_seed1", "morphology_noisy_seed1", *defenses):  # quick: two morphology seeds
        assert os.path.exists(out / "models" / f"{name}.safetensors")
    assert any(k.startswith("defenses: 6 models clean and under") for k in result["timings"])


def test_headline_is_what_the_report_says(demo):
    _, result = demo
    markdown = open(result["report"]["markdown"], encoding="utf-8").read()
    assert len(result["headline"]) >= 8
    for what, value in result["headline"]:
        first = value.split(" (")[0].split(" -> ")[0].split(" / ")[0]
        assert first.rstrip("%") in markdown, (what, value)


def test_paper_values_only_in_labelled_columns(demo):
    _, result = demo
    markdown = open(result["report"]["markdown"], encoding="utf-8").read()
    lines = markdown.splitlines()
    for paper_value in ("0.066 / 42%", "0.082 / 59%", "0.008 / 1%"):
        rows = [i for i, line in enumerate(lines) if paper_value in line]
        assert rows, paper_value
        for i in rows:
            header = next(lines[j] for j in range(i, -1, -1) if lines[j].startswith("| ") and "---" in lines[j + 1])
            cells = [c.strip() for c in lines[i].strip("|").split("|")]
            columns = [c.strip() for c in header.strip("|").split("|")]
            assert "[Campagne 2021" in columns[cells.index(paper_value)], (paper_value, columns)


def _table(markdown: str, title: str):
    """``(header cells, {row label: cells})`` of the report table whose title starts with ``title``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"**{title}"))
    header = next(i for i in range(start, len(lines)) if lines[i].startswith("| "))
    end = next((i for i in range(header, len(lines)) if not lines[i].startswith("|")), len(lines))

    def split(line):
        return [c.strip() for c in line.strip().strip("|").split("|")]

    return split(lines[header]), {r[0]: r[1:] for r in map(split, lines[header + 2:end])}


def test_defenses_table_has_every_model_and_input_and_the_paper_only_in_its_columns(demo):
    _, result = demo
    markdown = open(result["report"]["markdown"], encoding="utf-8").read()
    header, rows = _table(markdown, "Defenses (cf. Mallam Garba, Susini and Kayo, Table 1)")
    ours = list(INPUTS.values())
    paper = [f"{c} [Mallam Garba, Susini and Kayo, Table 1]" for c in ours]
    assert header[1:] == ours + paper
    assert list(rows) == list(MODELS.values())
    for key, label in MODELS.items():
        measured = [float(c.rstrip("%")) for c in rows[label][:len(ours)]]
        assert all(0 <= v <= 100 for v in measured), (label, measured)
        assert measured == [pytest.approx(100 * result["facts"][f"defenses/{key}/{i}"].mean, abs=0.051) for i in INPUTS]
        quoted = rows[label][len(ours):]
        expected = [f"{v:.2f}%" for v in PAPER_TABLE_1[key]] if key in PAPER_TABLE_1 else ["-"] * len(ours)
        assert quoted == expected, (label, quoted)
    for value in ("58.20%", "37.68%"):  # the paper's, nowhere but in its columns
        for line in markdown.splitlines():
            if value in line:
                cells = [c.strip() for c in line.strip("|").split("|")]
                assert header[cells.index(value)].endswith("[Mallam Garba, Susini and Kayo, Table 1]"), line


def test_sensitivity_model_has_a_smaller_output_box_than_the_basic_model(demo):
    # Wang et al. 2018's sensitivity, recomputed here from the saved models on fresh simulated galaxies
    out, result = demo
    cfg = PRESETS["quick"].morphology
    x = torch.from_numpy(simulate_morphology(20, seed=123, size=cfg.size, preprocess=True)["images_y10"])
    eps = result["facts"]["defenses/box_eps"].mean
    volume = {}
    for m in ("basic", "sensitivity"):
        model = models.load(out / "models" / f"morphology_defenses_{m}.safetensors").eval()
        with torch.no_grad():
            volume[m] = log_volume(*interval_bounds(model, x, eps, lo=0.0, hi=1.0))
    assert volume["sensitivity"].mean() < volume["basic"].mean(), volume
    facts = result["facts"]
    assert facts["defenses/sensitivity/log_volume"].mean < facts["defenses/basic/log_volume"].mean


def test_saved_model_reproduces_the_clean_photoz_numbers(demo):
    out, result = demo
    cfg = PRESETS["quick"].photoz
    sim = simulate_photoz(cfg.n_train + cfg.n_test, seed=0, z_range=(0.02, cfg.z_max))
    model = models.load(out / "models" / "photoz_baseline.safetensors").eval()
    x = torch.from_numpy(sim["images"][cfg.n_train:])
    ebv = torch.from_numpy(sim["ebv"][cfg.n_train:]).float()
    with torch.no_grad():
        z_phot = torch.cat([model.z_phot(x[i:i + 128], ebv[i:i + 128]) for i in range(0, len(x), 128)])
    measured = photoz_metrics(z_phot, torch.from_numpy(sim["z_spec"][cfg.n_train:]).float())
    facts = result["facts"]  # one training seed (the quick preset's photo-z): values[0] is the saved model's
    assert measured["sigma_mad"] == pytest.approx(facts["photoz/baseline/held-out/sigma_mad"].values[0], rel=1e-5)
    assert measured["eta"] == pytest.approx(facts["photoz/baseline/held-out/eta"].values[0])


def test_pdf_metrics_are_those_of_the_saved_models_pdfs_and_the_findings_compare_them(demo):
    out, result = demo
    cfg = PRESETS["quick"].photoz
    sim = simulate_photoz(cfg.n_train + cfg.n_test, seed=0, z_range=(0.02, cfg.z_max))
    test = slice(cfg.n_train, cfg.n_train + cfg.n_attack)  # the galaxies the perturbations run on
    for name, file in (("baseline", "photoz_baseline"), (None, "photoz_adversarial")):
        model = models.load(out / "models" / f"{file}.safetensors").eval()
        with torch.no_grad():
            pdf = model.pdf(torch.from_numpy(sim["images"][test]), torch.from_numpy(sim["ebv"][test]).float())
        expected = pdf_metrics(pdf, sim["z_spec"][test], model.bin_edges)
        key = name or next(k.split("/")[1] for k in result["facts"] if k.startswith("photoz/adversarial"))
        facts = result["facts"]
        assert facts[f"photoz/{key}/natural/crps_mean"].values[0] == pytest.approx(expected["crps_mean"], rel=1e-4)
        assert facts[f"photoz/{key}/natural/pit_ks"].values[0] == pytest.approx(expected["pit_ks"], abs=1e-4)
    pdf_findings = [f for f in result["findings"] if f.startswith("p.d.f.s of the")]
    assert len(pdf_findings) == 2 and all(re.search(r"degrade (more than|less than|as much as)", f)
                                          for f in pdf_findings)


def test_fgsm_hurts_more_than_uniform_noise_of_the_same_size(demo):
    # Campagne 2021's finding, measured here at 1 sky sigma per band (seed 0, quick preset:
    # uniform 0.035 / 17%, FGSM 0.055 / 43%).
    _, result = demo
    facts = result["facts"]
    uniform = facts["photoz/baseline/uniform noise 1 sky sigma/sigma_mad"].mean
    fgsm = facts["photoz/baseline/FGSM 1 sky sigma/sigma_mad"].mean
    clean = facts["photoz/baseline/natural/sigma_mad"].mean  # the same galaxies
    assert fgsm > 1.3 * uniform and abs(uniform / clean - 1) < 0.2, facts


def test_demo_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        cli.main(["demo", "--device", "cuda", "--out", str(tmp_path / "d")]) if not torch.cuda.is_available() \
            else pytest.skip("a GPU is visible")
    assert "no CUDA device" in str(err.value.code) and "\n" not in str(err.value.code)
    with pytest.raises(SystemExit) as err:
        cli.main(["demo", "--quick", "--scale", "paper"])
    assert err.value.code == 2
    with pytest.raises(ValueError, match="parts"):
        run_demo("quick", out=tmp_path / "d", parts=("photo-z",))
    with pytest.raises(SystemExit) as err:
        cli.main(["demo", "--quick", "--only", "photoz", "defence"])
    assert err.value.code == 2
    with pytest.raises(ValueError, match="must be one of"):
        run_demo("fast", out=tmp_path / "d")
    with pytest.raises(ValueError, match="seeds must be whole numbers >= 1, got 0"):
        run_demo("quick", out=tmp_path / "d", seeds=0)
    with pytest.raises(ValueError, match="got 0 for 'defenses'"):
        run_demo("quick", out=tmp_path / "d", seeds={"defenses": 0})
    with pytest.raises(ValueError, match="unknown part.*'defence'"):
        run_demo("quick", out=tmp_path / "d", seeds={"defence": 2})
    for bad in (["--seeds", "defence=2"], ["--seeds", "3", "defenses=2"], ["--seeds", "defenses=two"]):
        with pytest.raises(SystemExit) as err:
            cli.main(["demo", "--quick", *bad])
        assert err.value.code == 2


def _without_wall_times(markdown: str) -> str:
    """The report without its wall-time section and the seconds quoted in notes."""
    return re.sub(r"\d+ s here", "N s here", markdown.split("## Wall time")[0])


def test_same_seed_and_threads_reproduce_the_report(demo, tmp_path):
    out, result = demo
    again = run_demo("quick", out=tmp_path / "again", seed=0, progress=False)
    first = open(result["report"]["markdown"], encoding="utf-8").read()
    second = open(again["report"]["markdown"], encoding="utf-8").read()
    assert "| torch CPU threads | " in first and '"torch threads": ' in first and '"training seeds": ' in first
    # what else orders the floating-point sums: the CPU and the vector width of torch's kernels
    assert f"| CPU | {cpu_model()} |" in first
    assert f"| torch CPU kernels | {torch.backends.cpu.get_cpu_capability()} |" in first
    assert _without_wall_times(first) == _without_wall_times(second)
    assert first != second  # the wall times themselves differ: the comparison above is not vacuous


def test_several_seeds_give_a_spread_everywhere_and_an_appendix(demo):
    # the quick preset trains the morphology models with 2 seeds and the photo-z models with 1
    _, result = demo
    markdown = open(result["report"]["markdown"], encoding="utf-8").read()
    for what, value in result["headline"]:
        if what.startswith("morphology") and "one trained model" not in what:
            pieces = re.split(r" -> | / ", value)
            assert len(pieces) >= 1 and all(" ± " in piece for piece in pieces), (what, value)
        elif what.startswith("photo-z"):
            assert " ± " not in value, (what, value)
    assert any("one trained model: seed 0" in what for what, _ in result["headline"])  # certified accuracy
    assert any(f.startswith("The numbers of the photoz and defenses parts rest on one trained model") for f in result["findings"])
    header = next(line for line in markdown.splitlines() if line.startswith("| ") and "| seed 1 |" in line)
    assert "| seed 0 | seed 1 | mean ± std |" in header
    assert "**Appendix: morphology per training seed**" in markdown and "Appendix: photoz" not in markdown
    assert "Randomized smoothing (Cohen et al. 2019): certified accuracy" in markdown
    assert re.search(r"\*\*Randomized smoothing .*\(one trained model: the first seed\)\*\*", markdown)
    assert result["facts"]["morphology/baseline/Y10"].seeds == 2
