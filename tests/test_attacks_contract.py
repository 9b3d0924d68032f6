"""The attack contract every attack keeps: a tensor from __call__, an AttackResult from .run,
inputs untouched, model modes restored, and bad inputs, labels and models refused with the samples named."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from advrobust.attacks import Attack, AttackResult, FGSM, OnePixel, OnePixelResult, PGD, PGDL2

from attack_helpers import (  # noqa: F401 (fixtures)
    _restore_rng, small_cnn, TinyPhotoz, trained_mlp, data, NaNModel,
)


def test_inputs_untouched_mode_restored_no_param_grads():
    model = small_cnn()
    model.train()
    model[1].eval()  # a sub-module in its own mode must keep it
    x, y = data()
    x0, y0 = x.clone(), y.clone()
    seen = []
    model[4].register_forward_hook(lambda m, i, o: seen.append(m.training))
    PGD(model, eps=0.1, steps=2, random_start=True)(x, y)
    PGDL2(model, eps=0.5, steps=2, random_start=True)(x, y)
    OnePixel(model, population=8, max_iter=2, seed=0)(x, y)
    assert not any(seen)  # dropout ran in eval mode
    assert model.training and not model[1].training and model[4].training
    assert torch.equal(x, x0) and torch.equal(y, y0) and not x.requires_grad
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


def test_bad_inputs_give_clear_errors():
    model = small_cnn()
    x, y = data()
    with pytest.raises(ValueError, match="eps"):
        PGD(model, eps=-0.1)
    with pytest.raises(ValueError, match="eps"):
        FGSM(model, eps=torch.tensor([0.1, -0.1, 0.1, 0.1, 0.1, 0.1]))
    with pytest.raises(ValueError, match="eps"):
        PGD(model, eps=torch.full((4,), 0.1))(x, y)
    with pytest.raises(ValueError, match="first dimension"):
        PGD(model)(x, y[:3])
    with pytest.raises(ValueError, match="NaN"):
        xn = x.clone()
        xn[0, 0, 0, 0] = float("nan")
        PGD(model)(xn, y)
    with pytest.raises(ValueError, match="meta"):
        PGD(small_cnn().to("meta"))(x, y)
    with pytest.raises(TypeError, match="float"):
        PGD(model)(x.long(), y)
    with pytest.raises(TypeError):
        PGD(model)(x.double(), y)
    with pytest.raises(ValueError, match="per channel"):
        PGD(model, lo=torch.zeros(5))(x, y)
    with pytest.raises(ValueError, match="lo"):
        PGD(model, lo=1.0, hi=0.0)
    with pytest.raises(TypeError, match="steps"):
        PGD(model, steps=2.5)
    with pytest.raises(ValueError, match="at least 4"):
        OnePixel(model)(x[0], y)
    with pytest.raises(ValueError, match="population"):
        OnePixel(model, population=3)
    with pytest.raises(TypeError, match="int64"):
        OnePixel(model, population=8)(x, y.float())
    with pytest.raises(ValueError, match="CR"):
        OnePixel(model, CR=1.5)
    with pytest.raises(ValueError, match="strategy"):
        OnePixel(model, strategy="best2")
    with pytest.raises(ValueError, match="low <= high"):
        OnePixel(model, F=(1.0, 0.5))
    with pytest.raises(TypeError, match="nn.Module"):
        PGD(lambda t: t)
    with pytest.raises(ValueError, match="finite"):
        PGD(model, eps=torch.tensor([0.1, float("inf"), 0.1, 0.1, 0.1, 0.1]))
    with pytest.raises(ValueError, match="lo has NaN"):
        PGD(model, lo=torch.tensor([0.0, float("nan"), 0.0]))(x, y)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        OnePixel(model, population=8)(x[None], y[:1])
    with pytest.raises(ValueError, match="objective must return"):
        OnePixel(model, population=8, max_iter=1, objective=lambda o, t: (o[:2, 0], o[:, 0] > 0))(x, y)


def test_nan_in_labels_or_extra_inputs_is_named():
    model = TinyPhotoz().eval()
    x, ebv, z = torch.randn(3, 5, 8, 8), torch.rand(3) * 0.1, torch.rand(3)
    bad_ebv, bad_z = ebv.clone(), z.clone()
    bad_ebv[1], bad_z[2] = float("nan"), float("inf")
    with pytest.raises(ValueError, match=r"extra\[0\] has 1 NaN"):
        PGDL2(model, eps=0.5, loss="photoz_dz")(x, z, bad_ebv)
    with pytest.raises(ValueError, match="y has 1 NaN"):
        PGD(model, loss="photoz_dz")(x, bad_z, ebv)
    with pytest.raises(ValueError, match="y has 1 NaN"):
        OnePixel(model, population=8, objective="photoz")(x, bad_z, ebv)


def test_zero_steps_return_a_copy_and_model_mode_survives_an_exception():
    model = small_cnn().train()
    x, y = data()
    out = PGD(model, eps=0.1, steps=0)(x, y)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()

    class Boom(nn.Module):
        def forward(self, t):
            raise RuntimeError("boom")

    boom = nn.Sequential(Boom()).train()
    with pytest.raises(RuntimeError, match="boom"):
        PGD(boom, eps=0.1)(x, y)
    assert boom.training and boom[0].training


def test_channels_last_is_transparent():
    model = small_cnn(dtype=torch.float64).eval()
    x, y = data(dtype=torch.float64)
    a = PGD(model, eps=0.05, steps=4, channels_last=True)(x, y)
    b = PGD(model, eps=0.05, steps=4, channels_last=False)(x, y)
    torch.testing.assert_close(a, b)
    assert a.is_contiguous() and x.is_contiguous()
    ra = OnePixel(model, population=8, max_iter=2, seed=3, channels_last=True).run(x, y)
    rb = OnePixel(model, population=8, max_iter=2, seed=3, channels_last=False)(x, y)
    torch.testing.assert_close(ra.x_adv, rb)


def test_every_attack_returns_a_tensor_when_called_and_a_result_from_run(trained_mlp):
    model, x, y = trained_mlp
    for atk in (FGSM(model, eps=0.5), PGD(model, eps=0.5, steps=3), PGDL2(model, eps=2.0, steps=3),
                OnePixel(model, population=8, max_iter=2, seed=0)):
        x_adv = atk(x, y)
        assert isinstance(x_adv, torch.Tensor) and x_adv.shape == x.shape
        res = atk.run(x, y)
        assert isinstance(res, AttackResult) and res.success.shape == (x.shape[0],)
        assert res.success.dtype == torch.bool and 0.0 <= res.success_rate <= 1.0
        torch.testing.assert_close(res.x_adv, x_adv)
    assert isinstance(OnePixel(model, population=8, max_iter=2, seed=0).run(x, y), OnePixelResult)


@pytest.mark.parametrize("make", [
    lambda m: FGSM(m, eps=0.1), lambda m: PGD(m, eps=0.1, steps=3), lambda m: PGDL2(m, eps=0.5, steps=3),
    lambda m: OnePixel(m, population=8, max_iter=2, seed=0),
])
def test_nan_model_output_is_an_error_naming_the_samples(make):
    x, y = data()
    with pytest.raises(ValueError, match=r"NaN/Inf for (images|6 of 6 samples).*\[0, 1, 2, 3, 4, 5\]"):
        make(NaNModel()).run(x, y)
    x[:, 0, 0, 0] = -1.0
    x[[1, 4], 0, 0, 0] = 1.0  # only these two
    with pytest.raises(ValueError, match=r"\[1, 4\]"):
        make(NaNModel(everywhere=False))(x, y)


@pytest.mark.parametrize("bad", [-100, 3, -1])
@pytest.mark.parametrize("make", [
    lambda m: FGSM(m, eps=0.1), lambda m: PGD(m, eps=0.1, steps=2), lambda m: PGDL2(m, eps=0.5, steps=2),
    lambda m: OnePixel(m, population=8, max_iter=2, seed=0),
])
def test_labels_outside_the_classes_are_refused(make, bad):
    x, y = data()
    y[3] = bad
    with pytest.raises(ValueError, match=rf"class indices in \[0, 3\).*\[{bad}\] at samples \[3\]"):
        make(small_cnn())(x, y)


def test_photoz_redshift_markers_are_refused():
    model = TinyPhotoz().eval()
    x, ebv = torch.randn(4, 5, 8, 8), torch.rand(4) * 0.1
    z = torch.tensor([0.3, -99.0, 0.5, -1.0])
    for atk in (PGD(model, eps=0.1, steps=1, loss="photoz_dz"), PGDL2(model, eps=0.5, steps=1, loss="photoz_ce"),
                OnePixel(model, population=8, max_iter=1, objective="photoz", seed=0)):
        with pytest.raises(ValueError, match=r"redshifts <= -1 \[-99.0, -1.0\] at samples \[1, 3\]"):
            atk(x, z, ebv)


def test_an_attack_has_one_hook_and_cannot_be_built_without_it():
    class NoHook(Attack):
        pass

    with pytest.raises(TypeError, match="forward"):
        NoHook(small_cnn())

    class Nudge(Attack):  # returns a tensor: run judges success by the objective
        objective = "classifier"

        def forward(self, x, y, lo, hi, extra):
            return x + 0.5

    model, (x, y) = small_cnn().eval(), data()
    assert torch.equal(Nudge(model)(x, y), x + 0.5)
    res = Nudge(model).run(x, y)
    with torch.no_grad():
        assert torch.equal(res.success, model(x + 0.5).argmax(1) != y)

