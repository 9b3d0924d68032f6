"""The defenses part's findings on constructed facts (the part itself runs in tests/test_demo.py): an
effect is claimed only when larger than its uncertainty (spread across seeds and test-sample error)."""
import pytest

from advrobust.demo.config import DefensesConfig
from advrobust.demo.defenses import BOX_MODELS, INPUTS, MODELS, defenses_findings, defenses_headline
from advrobust.demo.seeds import combine_facts

N = 200  # test images behind every accuracy


def _facts(accuracy, seeds=1, jitter=0.0, box=None):
    """Facts of ``seeds`` seeds: ``accuracy[model][input]`` (+- ``jitter`` alternating by seed), log-volume ``box``."""
    per_seed = []
    for s in range(seeds):
        sign = 1 if s % 2 == 0 else -1
        facts = {f"defenses/{m}/{i}": accuracy[m][i] + sign * jitter for m in MODELS for i in INPUTS}
        facts.update({f"defenses/{m}/log_volume": (box or {}).get(m, 20.0) for m in BOX_MODELS})
        facts["defenses/noise_sigma"] = 0.05
        per_seed.append(facts)
    return combine_facts(per_seed, n_objects={f"defenses/{m}/{i}": N for m in MODELS for i in INPUTS})


def _accuracy(smoothing_attacked, others_attacked=0.30, natural=0.90):
    table = {m: {i: (natural if i == "natural" else others_attacked) for i in INPUTS} for m in MODELS}
    table["smoothing"] = {i: (natural if i == "natural" else smoothing_attacked) for i in INPUTS}
    return table


def test_a_small_lead_of_smoothing_is_not_claimed():
    # 2 points on 200 images: the binomial errors (~3.3 points each) are larger
    findings = defenses_findings(DefensesConfig(), _facts(_accuracy(0.32)))
    assert "cannot be told here" in findings[0] and "shows here" not in findings[0]
    assert "one trained model each" in findings[0]


def test_a_large_lead_of_smoothing_is_claimed_and_a_deficit_is_named():
    shows = defenses_findings(DefensesConfig(), _facts(_accuracy(0.60)))[0]
    assert "shows here: smoothing is best under every attack" in shows
    behind = _accuracy(0.60)
    behind["pgd_l2_at"]["pgd_l2"] = 0.85
    assert "does not show here" in defenses_findings(DefensesConfig(), _facts(behind))[0]
    assert "PGD-L2" in defenses_findings(DefensesConfig(), _facts(behind))[0]


def test_the_spread_across_seeds_can_hide_an_effect():
    # a 10-point lead is an effect with one seed's test-sample error (~4.4 points of the difference) but
    # not when the seeds scatter by +- 15 points
    table = _accuracy(0.40)
    assert "shows here" in defenses_findings(DefensesConfig(), _facts(table))[0]
    spread = defenses_findings(DefensesConfig(), _facts(table, seeds=4, jitter=0.15))[0]
    assert "cannot be told here" in spread and "±" in spread and "one trained model" not in spread


def test_sensitivity_and_headline_follow_the_facts():
    facts = _facts(_accuracy(0.40), box={"basic": 25.0, "sensitivity": 15.0})
    sentence = defenses_findings(DefensesConfig(), facts)[3]
    assert "is smaller than the basic model's" in sentence and "15.00" in sentence and "25.00" in sentence
    headline = dict(defenses_headline(DefensesConfig(), facts))
    assert headline["defenses: output-box log-volume, basic / sensitivity training"] == "25.00 / 15.00"
    same = defenses_findings(DefensesConfig(), _facts(_accuracy(0.40), box={"basic": 20.0, "sensitivity": 20.0}))[3]
    assert "not measurably different from" in same


@pytest.mark.parametrize("natural_at, verdict, cost", [(0.70, "shows here", "70.0% clean (a cost)"),
                                                        (0.88, "does not show here", "88.0% clean (within the")])
def test_adversarial_training_cost_is_claimed_only_beyond_the_uncertainty(natural_at, verdict, cost):
    table = _accuracy(0.40)
    for m in ("pgd_l2_at", "pgd_linf_at", "mixed_at"):
        table[m]["natural"] = natural_at
    sentence = defenses_findings(DefensesConfig(), _facts(table))[1]
    assert f"costs clean accuracy; this {verdict}" in sentence and sentence.count(cost) == 3


def test_only_takes_one_or_more_parts():
    from advrobust.cli.demo import build_parser
    parser = build_parser("advrobust demo")
    assert parser.parse_args(["--only", "photoz", "morphology"]).only == ["photoz", "morphology"]
    assert parser.parse_args(["--only", "defenses"]).only == ["defenses"]
    assert parser.parse_args([]).only is None


@pytest.mark.slow  # a tiny demo: ~15-25 s
def test_the_defenses_part_reuses_the_morphology_models_and_measures_every_fact(tmp_path):
    # a tiny demo of the two morphology parts: one survey, the morphology part's basic and noisy models reused
    from advrobust.demo import DemoConfig, run_demo
    from advrobust.demo.config import MorphologyConfig

    cfg = DemoConfig(name="tiny", morphology=MorphologyConfig(
        n_train=48, n_test=16, size=48, epochs=1, batch_size=16, n_attack=8, n_onepixel=2, population=10,
        generations=2, n_certify=4, n0=10, n=20, seeds=1), defenses=DefensesConfig(n_attack=8, smooth_n=8))
    result = run_demo(cfg, out=tmp_path, seed=0, progress=False, parts=("morphology", "defenses"))
    files = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert files == sorted([f"morphology_{m}.safetensors" for m in ("baseline", "mmd", "noisy")]
                           + [f"morphology_defenses_{m}.safetensors" for m in ("pgd_l2_at", "pgd_linf_at", "mixed_at",
                                                                               "sensitivity")])
    assert sum(k.startswith("morphology: simulate") for k in result["timings"]) == 1
    facts = result["facts"]
    for m in MODELS:
        for i in INPUTS:
            assert 0.0 <= facts[f"defenses/{m}/{i}"].mean <= 1.0
    assert all(f"defenses/{m}/log_volume" in facts for m in BOX_MODELS)
    assert sum(f.startswith("Mallam Garba, Susini and Kayo find") for f in result["findings"]) == 2
    assert any(what.startswith("defenses under PGD-Linf") for what, _ in result["headline"])


def test_seeds_per_part_from_the_command_line():
    from advrobust.cli.demo import _seeds_argument, build_parser
    parser = build_parser("advrobust demo")
    assert _seeds_argument(parser.parse_args(["--seeds", "3"]).seeds) == 3
    assert _seeds_argument(parser.parse_args(["--seeds", "defenses=3", "morphology=2"]).seeds) == {
        "defenses": 3, "morphology": 2}
    assert _seeds_argument(parser.parse_args([]).seeds) is None


@pytest.mark.slow  # a tiny demo: ~20-30 s
def test_seeds_of_one_part_leave_the_others_at_the_preset(tmp_path):
    # two defenses seeds over one morphology seed: the second defenses seed has no morphology models to
    # reuse and trains its own basic and noisy models
    from advrobust.demo import DemoConfig, run_demo
    from advrobust.demo.config import MorphologyConfig

    cfg = DemoConfig(name="tiny", morphology=MorphologyConfig(
        n_train=48, n_test=16, size=48, epochs=1, batch_size=16, n_attack=8, n_onepixel=2, population=10,
        generations=2, n_certify=4, n0=10, n=20, seeds=1), defenses=DefensesConfig(n_attack=8, smooth_n=8, seeds=1))
    result = run_demo(cfg, out=tmp_path, seed=0, progress=False, parts=("morphology", "defenses"),
                      seeds={"defenses": 2})
    facts = result["facts"]
    assert facts["morphology/baseline/Y10"].seeds == 1
    assert all(facts[f"defenses/{m}/{i}"].seeds == 2 for m in MODELS for i in INPUTS)
    files = {p.name for p in (tmp_path / "models").iterdir()}
    assert {"morphology_defenses_basic_seed1.safetensors", "morphology_defenses_noisy_seed1.safetensors"} <= files
    assert "morphology_defenses_basic.safetensors" not in files  # seed 0 reused the morphology part's model
