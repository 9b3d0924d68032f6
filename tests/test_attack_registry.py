"""The attack registry (advrobust.attacks.by_name): one name per attack everywhere, old names with a
DeprecationWarning, one check of the names, radii stated by the specs, and a new attack as one line."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from advrobust.attacks import PGDL2, eps_l2_equal_volume
from advrobust.attacks.by_name import (
    ATTACK_NAMES, ATTACK_SPECS, TRAINING_ATTACKS, AttackSettings, AttackSpec, attack_by_name, check_attack_names,
    image_unit_radii, make_attack,
)
from advrobust.defenses import AdversarialTraining

from attack_helpers import _restore_rng, data, small_cnn  # noqa: F401 (fixtures)

SHAPE = (3, 8, 8)


def gen(seed=5):
    return torch.Generator().manual_seed(seed)


def build(name, model, settings, **kw):
    return attack_by_name(name, model, settings, task="classifier", image_shape=SHAPE, generator=gen(), **kw)


def test_every_registered_attack_runs_within_its_stated_radius():
    model, (x, y) = small_cnn().eval(), data()
    settings = AttackSettings(eps=0.05, pgd_steps=3, population=8, generations=2)
    assert ATTACK_NAMES == tuple(ATTACK_SPECS)
    for name, spec in ATTACK_SPECS.items():
        delta = build(name, model, settings)(x, y) - x
        assert delta.shape == x.shape and delta.abs().amax() > 0, name
        if spec.norm == "linf":
            assert spec.radius(settings, SHAPE) == 0.05 and delta.abs().amax() <= 0.05 + 1e-5, name  # float32 rounding of x + eps - x
        elif spec.norm == "l2":
            radius = spec.radius(settings, SHAPE)
            assert radius == eps_l2_equal_volume(0.05, 64), name
            assert (delta.flatten(1).norm(dim=1) <= radius * (1 + 1e-5)).all(), name
        else:  # l0: at most `pixels` pixel positions changed, no radius
            assert spec.norm == "l0" and spec.radius is None, name
            assert ((delta != 0).any(1).flatten(1).sum(1) <= settings.pixels).all(), name


def test_pgd_l2_is_one_name_in_training_and_evaluation_and_pgd2_is_deprecated():
    model, (x, y) = small_cnn().eval(), data()
    settings = AttackSettings(eps=0.05, pgd_steps=3)
    radius = eps_l2_equal_volume(0.05, 64)
    want = PGDL2(model, radius, alpha=radius / 4, steps=3, random_start=True, generator=gen())(x, y)  # by hand
    torch.testing.assert_close(build("pgd_l2", model, settings)(x, y), want, rtol=0, atol=0)
    torch.testing.assert_close(make_attack("pgd_l2", model, radius, loss="ce", steps=3, step_size=radius / 4,
                                           generator=gen())(x, y), want, rtol=0, atol=0)
    with pytest.warns(DeprecationWarning, match="'pgd2' is deprecated; use 'pgd_l2'"):
        old = build("pgd2", model, settings)
    torch.testing.assert_close(old(x, y), want, rtol=0, atol=0)
    with pytest.warns(DeprecationWarning, match="pgd2"):
        assert check_attack_names(["fgsm", "pgd2"]) == ["fgsm", "pgd_l2"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_attack_names(list(ATTACK_NAMES)) == list(ATTACK_NAMES)  # canonical names: no warning


def test_unknown_names_get_one_clear_error_listing_the_valid_ones():
    model = small_cnn()
    every = "fgsm, fgsm_rs, pgd, pgd_l2, onepixel, noise"
    with pytest.raises(ValueError, match=rf"unknown attack\(s\) \['bogus', 'pgd3'\]; the attacks are: {every}$"):
        check_attack_names(["fgsm", "bogus", "pgd3"])
    with pytest.raises(ValueError, match="no attack named"):
        check_attack_names([])
    with pytest.raises(ValueError, match=rf"unknown attack\(s\) \['bogus'\]; the attacks are: {every}"):
        attack_by_name("bogus", model, AttackSettings(eps=0.1), task="classifier", image_shape=SHAPE)
    training = "the training attacks are: fgsm, fgsm_rs, pgd, pgd_l2$"
    with pytest.raises(ValueError, match=r"\['onepixel'\] cannot be used in training; " + training):
        make_attack("onepixel", model, 0.1, loss="ce")
    with pytest.raises(ValueError, match=r"AdversarialTraining: attack\(s\) \['noise'\] cannot be used in training"):
        AdversarialTraining("noise", 0.1)
    with pytest.raises(ValueError, match=r"AdversarialTraining: unknown attack\(s\) \['pgd_linf'\]"):
        AdversarialTraining("pgd_linf", 0.1)


def test_training_attacks_are_the_specs_that_train_and_the_train_command_offers_them():
    from advrobust.cli.train import build_parser

    assert TRAINING_ATTACKS == tuple(n for n, s in ATTACK_SPECS.items() if s.trains) == ("fgsm", "fgsm_rs", "pgd",
                                                                                          "pgd_l2")
    action = build_parser("advrobust train").options["attack"]
    assert tuple(action.choices) == TRAINING_ATTACKS


def test_radii_in_image_units_come_from_the_specs():
    names = ["fgsm", "pgd_l2", "onepixel", "noise"]
    radii = image_unit_radii(names, AttackSettings(eps=0.01), SHAPE)
    l2 = "pgd_l2 (L2 radius over a band's pixels)"
    assert radii == {"fgsm": 0.01, "noise": 0.01, l2: eps_l2_equal_volume(0.01, 64)}
    sky = (1.0, 2.0, 4.0)
    radii = image_unit_radii(names, AttackSettings(eps=2.0, unit=sky), SHAPE)  # per band with a unit
    assert radii.keys() == {"fgsm", "noise", l2} and np.array_equal(radii["fgsm"], [2.0, 4.0, 8.0])
    np.testing.assert_allclose(radii[l2], eps_l2_equal_volume(2.0, 64) * np.asarray(sky))


def test_a_new_attack_is_one_registry_line(monkeypatch):
    from advrobust.scan.rows import scan_rows

    def shift_build(model, a):
        return lambda x, y=None, *extra: x + a.eps

    spec = AttackSpec(shift_build, "linf", lambda settings, shape: 0.5 * settings.eps, False, "constant shift")
    monkeypatch.setitem(ATTACK_SPECS, "shift", spec)
    model, (x, _) = small_cnn().eval(), data()
    settings = AttackSettings(eps=0.02)
    assert check_attack_names(["shift"]) == ["shift"]
    torch.testing.assert_close(build("shift", model, settings)(x), x + 0.01)
    rows = scan_rows(model, x, (), np.arange(6), task="classifier", attacks=["shift", "pgd_l2"],
                     settings=settings, seed=0)
    assert np.allclose(rows["shift_eps"], 0.01) and np.allclose(rows["pgd_l2_eps"], eps_l2_equal_volume(0.02, 64))
    with pytest.raises(ValueError, match="cannot be used in training"):
        make_attack("shift", model, 0.1, loss="ce")
