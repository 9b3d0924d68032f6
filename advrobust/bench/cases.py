"""The benchmark cases, one list shared by ``advrobust bench`` (Markdown reports) and the
pytest-benchmark suites in bench/ (``pytest bench --benchmark-only``).

Each case belongs to one or more size tiers:

* ``quick`` -- smoke sizes (``advrobust bench ... --quick``, and the fast test in tests/);
* ``default`` -- the pytest suites' default: every op and attack at sizes that run in a few minutes
  on 2 CPU cores (``pytest bench --benchmark-only``);
* ``full`` -- the sizes of the recorded ``advrobust bench`` results (``pytest bench --bench-tier full``).

:func:`select` picks a tier's cases from a list.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from advrobust.attacks import eps_l2_equal_volume

TIERS = ("quick", "default", "full")


def select(cases, tier: str) -> list:
    """The cases of ``cases`` (each with a ``tiers`` attribute) that belong to ``tier``."""
    if tier not in TIERS:
        raise ValueError(f"unknown benchmark tier {tier!r}: one of {', '.join(TIERS)}")
    return [c for c in cases if tier in c.tiers]


# ---------------------------------------------------------------------------- ops

@dataclass(frozen=True)
class StepCase:
    """linf_step / l2_step on float32 images ``shape`` = (B, C, H, W)."""
    shape: tuple
    tiers: tuple

    @property
    def label(self) -> str:
        return "x".join(map(str, self.shape))


@dataclass(frozen=True)
class DEBuildCase:
    """de_build of ``B`` images ``chw`` x ``P`` candidates of ``k`` pixels; ``compile``: time the
    compiled twin too (its compilation is slow at the OnePixel chunk size)."""
    B: int
    P: int
    k: int
    chw: tuple
    tiers: tuple
    compile: bool = True

    @property
    def label(self) -> str:
        return f"B={self.B} P={self.P} k={self.k} {'x'.join(map(str, self.chw))}"


@dataclass(frozen=True)
class DETrialCase:
    """de_trial of ``B`` populations of ``P`` candidates with ``D`` genes."""
    B: int
    P: int
    D: int
    tiers: tuple

    @property
    def label(self) -> str:
        return f"B={self.B} P={self.P} D={self.D}"


@dataclass(frozen=True)
class MMDCase:
    """mk_mmd forward + backward, n = m points of ``d`` features, ``K`` kernels, for ``impls``."""
    n: int
    K: int
    impls: tuple
    tiers: tuple
    d: int = 256

    @property
    def label(self) -> str:
        return f"n=m={self.n} d={self.d} K={self.K}"


STEPS = [StepCase((8, 3, 16, 16), ("quick",)), StepCase((64, 5, 64, 64), ("default", "full")),
         StepCase((256, 3, 100, 100), ("full",))]
#: one OnePixel chunk of 3x100x100 images: 16 MiB on a CPU (1 x 139), 256 MiB on a GPU (5 x 400)
ONEPIXEL_CHUNK = {"cpu": (1, 139), "cuda": (5, 400)}
DE_BUILDS = [DEBuildCase(4, 50, 1, (3, 20, 20), ("quick", "default"), compile=False),
             DEBuildCase(64, 400, 1, (3, 100, 100), ("full",))]
DE_TRIALS = [DETrialCase(4, 50, 5, ("quick",)), DETrialCase(64, 400, 5, ("default", "full"))]
MMDS = [MMDCase(128, 5, ("kernel", "eager"), ("quick",)),
        MMDCase(512, 5, ("kernel", "eager", "compiled"), ("default", "full")),
        MMDCase(512, 19, ("kernel", "eager"), ("full",)),
        MMDCase(2048, 5, ("kernel", "eager", "compiled"), ("full",)),
        MMDCase(2048, 19, ("kernel", "eager"), ("full",)),
        MMDCase(8192, 5, ("kernel", "eager"), ("full",)),
        MMDCase(8192, 19, ("kernel",), ("full",))]


def onepixel_chunk_case(device_type: str) -> DEBuildCase:
    """de_build at one OnePixel chunk on ``device_type`` (full tier; no compiled twin)."""
    B, P = ONEPIXEL_CHUNK["cuda" if device_type == "cuda" else "cpu"]
    return DEBuildCase(B, P, 1, (3, 100, 100), ("full",), compile=False)


# ---------------------------------------------------------------------------- attacks

@dataclass(frozen=True)
class GradAttackCase:
    """A gradient attack of advrobust and its torchattacks peer, same settings (eps in [0, 1] image
    units, clamp to [0, 1], no random start). ``ours(A, model, eps)`` and ``theirs(ta, model, eps)``
    build them from the modules :mod:`advrobust.attacks` and ``torchattacks``; ``steps``: model
    forward+backward passes per attack."""
    name: str
    steps: int
    ours: Callable
    theirs: Callable


def _l2(eps: float) -> float:
    """The L2 radius of the same volume as the Linf ball ``eps`` on 100x100 images."""
    return eps_l2_equal_volume(eps, 100 * 100)


GRAD_ATTACKS = [
    GradAttackCase("FGSM", 1, lambda A, m, eps: A.FGSM(m, eps=eps, lo=0.0, hi=1.0),
                   lambda ta, m, eps: ta.FGSM(m, eps=eps)),
    GradAttackCase("PGD-Linf-10", 10,
                   lambda A, m, eps: A.PGD(m, eps=eps, alpha=eps / 10, steps=10, lo=0.0, hi=1.0),
                   lambda ta, m, eps: ta.PGD(m, eps=eps, alpha=eps / 10, steps=10, random_start=False)),
    GradAttackCase("PGD-L2-10", 10,
                   lambda A, m, eps: A.PGDL2(m, eps=_l2(eps), alpha=_l2(eps) / 10, steps=10, lo=0.0, hi=1.0),
                   lambda ta, m, eps: ta.PGDL2(m, eps=_l2(eps), alpha=_l2(eps) / 10, steps=10,
                                               random_start=False)),
]

#: the attack benchmarks' sizes per tier: images per gradient attack, OnePixel images, population,
#: generations, ConvNet training steps of 32 images, test images
ATTACK_SIZES = {
    "quick": {"n_grad": 8, "n_onepixel": 2, "population": 20, "iters": 2, "train_steps": 4, "n_test": 64},
    "default": {"n_grad": 8, "n_onepixel": 2, "population": 50, "iters": 3, "train_steps": 4, "n_test": 64},
    "full": {"n_grad": 64, "n_onepixel": 16, "population": 400, "iters": 10, "train_steps": 60, "n_test": 512},
}


# ---------------------------------------------------------------------------- certification

@dataclass(frozen=True)
class CertifyCase:
    """Smooth.certify_batch with fixed n: ``n0`` selection draws, ``n`` estimation draws, ``batch``
    noisy copies per forward pass, on ``n_images`` 3x32x32 images."""
    n0: int
    n: int
    batch: int
    n_images: int
    tiers: tuple

    @property
    def label(self) -> str:
        return f"{self.n_images} images n0={self.n0} n={self.n} batch={self.batch}"


CERTIFY = [CertifyCase(20, 100, 100, 4, ("quick",)),
           CertifyCase(100, 1000, 1000, 4, ("default",)),
           CertifyCase(100, 1000, 1000, 32, ("full",)),
           CertifyCase(100, 1000, 100, 32, ("full",)),
           CertifyCase(10, 100, 1000, 32, ("full",))]
# Adaptive certification (a sequential n) gets its own list here, CERTIFY_ADAPTIVE, once
# advrobust.defenses has it; bench/test_certify_speed.py has the matching place for its benchmark.


# ---------------------------------------------------------------------------- scan

@dataclass(frozen=True)
class ScanCase:
    """scan_survey of ``n_objects`` 3x``size``x``size`` cutouts under ``attack`` (PGD: ``pgd_steps``),
    ``batch`` images per attack batch, against the same model's forwards and forward+backwards."""
    n_objects: int
    size: int
    batch: int
    attack: str
    pgd_steps: int
    tiers: tuple

    @property
    def label(self) -> str:
        return f"{self.n_objects} objects 3x{self.size}x{self.size} {self.attack}"

    @property
    def model_passes(self) -> dict:
        """The model passes a scan row costs: a clean and a perturbed forward, and the attack's
        forward+backward passes (noise none, FGSM one, PGD one per step)."""
        return {"forward": 2, "forward+backward": {"noise": 0, "fgsm": 1}.get(self.attack, self.pgd_steps)}


#: one case per attack set in the default tier: objects/s of each beside its model-bound time
SCANS = [ScanCase(32, 32, 16, "pgd", 10, ("quick",))] + \
    [ScanCase(64, 32, 32, attack, 10, ("default",)) for attack in ("noise", "fgsm", "pgd")] + \
    [ScanCase(2048, 64, 128, attack, 10, ("full",)) for attack in ("noise", "fgsm", "pgd")]
