"""The demo's sizes: three presets (``quick``, ``default``, ``paper``) of one :class:`DemoConfig`.

Why these numbers (calibration runs on the 2-core CPU this package is developed on, 2026-11-24):
photo-z training of ``photoz_small`` on bright (z < 0.4) galaxies sat on a plateau (sigma_MAD
~0.035, eta 10-20%) until ~40,000-50,000 galaxy-epochs and reached sigma_MAD 0.017, eta 1.0% after
100,000, so ``default`` trains 10,000 galaxies for 10 epochs with a one-cycle schedule (~1.5 minutes
per model); ``quick`` (the CI smoke run, ~2.5 minutes) cannot afford that and its report says
what it reaches. Morphology was learnt in 2-3 epochs on 1,500 preprocessed Y10 stamps (64x64 here;
100x100, the paper's size, in ``paper``). ``paper`` has the papers' sizes (Campagne 2021: 100,000
training galaxies, the Inception net; Ciprijanovic et al. 2022: ResNet18, one-pixel population
400, 80 generations, 150 images) and is meant for a GPU; it has not been run (no GPU here).

Training seeds (issue 25): one trained model per method cannot tell an effect from the luck of one
training (two default runs read one-pixel success 33% vs 16% for the same baseline), so each part
trains its models once per seed and reports mean ± spread. The morphology models train in seconds:
``default`` trains them with 3 seeds, paid for by attacking 300 test images with FGSM / PGD (600
before; binomial error <= 2.9%), running the one-pixel attack on 50 (100 before: across 3 seeds its
success rate spread by 17-27 points, far more than the 5-7 points of 100 images' binomial error, so
seeds buy more than images) and certifying 50 (100 before; the first seed's noisy model only:
certification took most of the part's time). A photo-z model takes ~1.5-2 minutes: one seed in
``default`` and ``quick`` (their reports say which numbers rest on one model).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional, Tuple

#: the demo's parts, in the order they run (``run_demo(parts=...)``, ``advrobust demo --only``)
PARTS = ("photoz", "morphology", "defenses")


@dataclass(frozen=True)
class PhotozConfig:
    """The photo-z part (Campagne 2021 on simulated LSST ugriz cutouts, nanomaggies).

    Attributes:
        n_train, n_test: simulated galaxies for training and for the held-out test set.
        n_attack: test galaxies the attacks run on (the first ones of the test set).
        z_max: upper end of the redshift range simulated and of the model's bins (z >= 0.02).
        model: registry name of the network; its ``z_max`` is set to :attr:`z_max`.
        epochs, lr, batch_size: Adam with a one-cycle schedule peaking at ``lr``.
        eps_sky: attack strengths, in sky sigmas of each band (L-inf); the last one is the headline
            strength, the one adversarial training uses.
        pgd_steps: PGD-Linf and PGD-L2 iterations (step eps / 4).
        fraction: adversarial fraction f_a of each mini-batch (Campagne 2021, Algorithm 1).
        seeds: training seeds (each model trained and measured once per seed; ``--seeds`` overrides).
    """

    n_train: int = 10_000
    n_test: int = 2_000
    n_attack: int = 1_000
    z_max: float = 0.4
    model: str = "photoz_small"
    epochs: int = 10
    lr: float = 3e-3
    batch_size: int = 64
    eps_sky: Tuple[float, ...] = (0.1, 0.3, 1.0)
    pgd_steps: int = 10
    fraction: float = 0.2
    seeds: int = 1


@dataclass(frozen=True)
class MorphologyConfig:
    """The morphology part (Ciprijanovic et al. 2022: spiral / elliptical / merger, gri, Y10 and Y1).

    Attributes:
        n_train, n_test: simulated galaxies (each at Y10 and Y1 depth) for training and testing.
        size: stamp size in pixels (0.2 arcsec each).
        model: registry name of the classifier.
        epochs, lr, batch_size: Adam, constant learning rate.
        mmd_lambda: weight of the MMD term of domain adaptation (Y10 labelled -> Y1 unlabelled).
        eps_sky: L-inf strength of FGSM / PGD in sky sigmas of the preprocessed images.
        pgd_steps: PGD-Linf iterations (step eps / 4).
        n_attack: test images attacked by FGSM and PGD (the first ones of the test set).
        n_onepixel: test images attacked by the one-pixel attack (correctly classified by every model).
        population, generations: differential evolution of the one-pixel attack.
        noise_sigma: Gaussian sigma of noisy training and of randomized smoothing (preprocessed units).
            0.05 is 2-3.6 sky sigmas per band and below the median galaxy pixel (~0.055); at 0.1 the
            noise drowned the faint structure and the 3-epoch noisy model reached 82% on clean Y10
            images (97% under its own noise), at 0.05 88% (99%), the baseline 98.5% (default preset,
            seed 0, 1 thread, 2026-12-02).
        n_certify, n0, n, alpha: randomized-smoothing certification (Cohen et al. 2019).
        seeds: training seeds (each model trained and measured once per seed; ``--seeds`` overrides).
    """

    n_train: int = 1_500
    n_test: int = 600
    size: int = 64
    model: str = "morphology_small"
    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 32
    mmd_lambda: float = 1.0
    eps_sky: float = 1.0
    pgd_steps: int = 10
    n_attack: int = 300
    n_onepixel: int = 50
    population: int = 100
    generations: int = 30
    noise_sigma: float = 0.05
    n_certify: int = 50
    n0: int = 100
    n: int = 1_000
    alpha: float = 0.001
    seeds: int = 3


@dataclass(frozen=True)
class DefensesConfig:
    """The defenses part (Mallam Garba, Susini and Kayo, Table 1; Wang et al. 2018) on the morphology survey.

    Its models train as the morphology part's (``MorphologyConfig`` model, epochs, lr, batch size; noisy
    training at its ``noise_sigma``), so its basic and noisy classifiers are the morphology part's.

    Attributes:
        n_train: training images of every defense model: None for the morphology part's training set
            (whose baseline and noisy model are then reused), or the first ``n_train`` of them (all six
            trained here): the quick preset's 300 fit its time but under-train every model (a smoke run:
            basic 62%, several defended models predicting one class, seed 0).
        eps_sky: L-inf strength of FGSM / PGD-Linf and of adversarial training, in sky sigmas of the
            preprocessed Y10 images per band; PGD-L2's radius is the L2 ball of the same volume
            (:func:`advrobust.attacks.eps_l2_equal_volume` over one band's pixels, in the same unit).
        pgd_steps: PGD iterations of the evaluation (step 2/3 eps, as the paper).
        train_pgd_steps: PGD iterations of adversarial and mixed training (step 2/3 eps); the paper used
            10, which costs ~11 clean epochs per epoch here.
        alpha: weight of the natural loss in adversarial training (the paper's 0.5): a random ``1 - alpha``
            of each batch is adversarial.
        sensitivity_beta: weight of the log-volume term of the sensitivity model (Wang et al. 2018). Chosen on
            a calibration run of the default preset with seed 1 (not the reported seed 0; 300 test images):
            beta 0.01 shrank the mean log-volume 26.0 -> 24.9 at 87% clean accuracy (baseline 92%), 0.03
            to 22.9 at 89%; with 0.1 (seed 0) the term dominated: 7.7 at 63% (baseline 99%). 0.03 shrinks
            the box without a large clean cost, as Wang et al. ask of it.
        n_attack: test images every model is evaluated and attacked on (the first of the test set).
        smooth_n, smooth_alpha: noisy copies per prediction of the smoothed classifier and the level of
            its abstention test (Cohen et al. 2019, PREDICT).
        seeds: training seeds (``--seeds`` overrides); with ``n_train`` None the basic and noisy models of
            seed ``s`` are the morphology part's of the same seed.
    """

    n_train: Optional[int] = None
    eps_sky: float = 1.0
    pgd_steps: int = 10
    train_pgd_steps: int = 1
    alpha: float = 0.5
    sensitivity_beta: float = 0.03
    n_attack: int = 100
    smooth_n: int = 32
    smooth_alpha: float = 0.001
    seeds: int = 1


@dataclass(frozen=True)
class DemoConfig:
    """Everything the demo does, by preset (:data:`PRESETS`)."""

    name: str = "default"
    photoz: PhotozConfig = field(default_factory=PhotozConfig)
    morphology: MorphologyConfig = field(default_factory=MorphologyConfig)
    defenses: DefensesConfig = field(default_factory=DefensesConfig)

    def as_dict(self) -> dict:
        """JSON-able form (for the report)."""
        return dataclasses.asdict(self)


PRESETS = {
    "default": DemoConfig(),
    "quick": DemoConfig(
        name="quick",
        photoz=PhotozConfig(n_train=2_000, n_test=500, n_attack=200, epochs=8, lr=1e-2),
        morphology=MorphologyConfig(n_train=1_000, n_test=200, epochs=3, n_attack=100, n_onepixel=8, population=50,
                                    generations=15, n_certify=40, n0=50, n=300, seeds=2),
        defenses=DefensesConfig(n_train=300, n_attack=50)),
    "paper": DemoConfig(
        name="paper",
        photoz=PhotozConfig(n_train=100_000, n_test=10_000, n_attack=10_000, model="pasquet_inception",
                            epochs=30, lr=1e-3),
        morphology=MorphologyConfig(n_train=20_000, n_test=3_000, size=100, model="resnet18", epochs=20,
                                    n_attack=3_000, n_onepixel=150, population=400, generations=80, n_certify=500,
                                    n=100_000),
        defenses=DefensesConfig(train_pgd_steps=10, n_attack=1_000, smooth_n=1_000)),
}
