"""Randomized smoothing (Cohen, Rosenfeld and Kolter 2019): the smoothed classifier
``g(x) = argmax_c P(f(x + N(0, sigma^2 I)) = c)``, its prediction with abstention and its certified
L2 radius, with the interface of the reference code (locuslab/smoothing, ``core.Smooth``).

Beyond the reference, :meth:`Smooth.certify_batch` certifies many images at once: the noise draws
of consecutive images fill each forward pass (the reference runs one image per pass, so a pass
holds at most n draws of one image), and the noise is drawn on the model's device. The draws are
made in the same order and the same chunks as a loop of :meth:`Smooth.certify` over the images, so
with the same generator both give the same noise.

:meth:`Smooth.certify_adaptive` answers "is this object certified at radius r?" for given radii with
far fewer draws for clear-cut objects: it samples in rounds and stops each object as soon as its
decisions are settled (a sequential test with the same guarantee; see its docstring).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy.stats import beta as beta_dist
from scipy.stats import binomtest, norm
from torch import Tensor, nn

from advrobust.modes import eval_mode
from advrobust.checks import check_finite, check_model, check_number, model_device
from advrobust.checks import check_finite_output
from advrobust.defenses.sequential import NOISY_HINT, NOISY_OUTPUT, checkpoints, clopper_pearson, noisy_passes

__all__ = ["Smooth", "AdaptiveCertificate", "lower_confidence_bound", "certified_radius"]


def lower_confidence_bound(n_a: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion with ``n_a`` successes
    in ``n`` trials (the reference's ``proportion_confint(n_a, n, alpha=2*alpha, method="beta")[0]``)."""
    return 0.0 if n_a == 0 else float(beta_dist.ppf(alpha, n_a, n - n_a + 1))


def certified_radius(p_a_lower: float, sigma: float) -> float:
    """``sigma * Phi^-1(p_A)`` (L2, image units), for ``p_A >= 0.5``."""
    return float(sigma * norm.ppf(p_a_lower))


@dataclass(frozen=True)
class AdaptiveCertificate:
    """The answer of :meth:`Smooth.certify_adaptive` for ``B`` images and ``R`` radii (all on the CPU).

    Attributes:
        prediction: int64 ``(B,)``, the smoothed classifier's class, :attr:`Smooth.ABSTAIN` (-1) when
            the lower bound on p_A is below 1/2.
        certified: bool ``(B, R)``, certified at ``radii[j]``: ``radius >= radii[j]`` and not abstaining.
        radius: float64 ``(B,)``, the certified L2 radius ``sigma * Phi^-1(p_A lower)`` reached at the
            stop (image units; 0 when abstaining). It may exceed the largest radius asked for.
        samples: int64 ``(B,)``, noisy forward passes (model evaluations) spent on each image.
        p_lower: float64 ``(B,)``, the lower bound on p_A at the stop.
        radii: float64 ``(R,)``, the radii asked for (image units).
    """

    prediction: Tensor
    certified: Tensor
    radius: Tensor
    samples: Tensor
    p_lower: Tensor
    radii: Tensor


class Smooth:
    """A smoothed classifier around ``base_classifier`` (Cohen, Rosenfeld and Kolter 2019).

    Args:
        base_classifier: maps a batch ``(B, C, H, W)`` to logits ``(B, num_classes)``; run in eval
            mode without gradients (its flags are restored afterwards).
        num_classes: number of classes.
        sigma: noise standard deviation in image units (nanomaggies for the simulated surveys).

    Every method takes ``generator`` (a ``torch.Generator`` on the model's device; None: the global
    RNG) for the noise.
    """

    #: the prediction of an abstention
    ABSTAIN = -1

    def __init__(self, base_classifier: nn.Module, num_classes: int, sigma: float) -> None:
        check_model("Smooth", base_classifier)
        self.base_classifier = base_classifier
        self.num_classes = int(check_number("Smooth", "num_classes", num_classes, integer=True, positive=True))
        self.sigma = check_number("Smooth", "sigma", sigma, positive=True)

    # -- public interface (the reference's) ------------------------------------------------------
    def predict(self, x: Tensor, n: int, alpha: float, batch_size: int, *,
                generator: Optional[torch.Generator] = None) -> int:
        """Monte-Carlo prediction of ``g(x)`` for one image ``x`` ``(C, H, W)``: the top class of ``n``
        noisy copies, or :attr:`ABSTAIN` when a two-sided binomial test of its count against the
        runner-up's does not reject p = 0.5 at level ``alpha``."""
        self._check("predict", x, alpha, batch_size, n=n)
        counts = self._counts("predict", [(x, int(n))], batch_size, generator)[0]
        top2 = torch.topk(counts, min(2, self.num_classes)).indices.tolist()
        n_a = int(counts[top2[0]])
        n_b = int(counts[top2[1]]) if len(top2) > 1 else 0
        if binomtest(n_a, n_a + n_b, p=0.5).pvalue > alpha:
            return self.ABSTAIN
        return top2[0]

    def certify(self, x: Tensor, n0: int, n: int, alpha: float, batch_size: int, *,
                generator: Optional[torch.Generator] = None) -> Tuple[int, float]:
        """Prediction and certified L2 radius of ``g`` at one image ``x`` ``(C, H, W)``.

        ``n0`` draws select the top class c_A; ``n`` fresh draws estimate p_A by its one-sided
        Clopper-Pearson lower bound at level ``alpha``; below 0.5 the answer is
        ``(ABSTAIN, 0.0)``, else ``(c_A, sigma * Phi^-1(p_A))`` (image units).
        """
        self._check("certify", x, alpha, batch_size, n=n, n0=n0)
        counts = self._counts("certify", [(x, int(n0)), (x, int(n))], batch_size, generator)
        return self._decide(counts[0], counts[1], int(n), alpha)

    def certify_batch(self, x: Tensor, n0: int, n: int, alpha: float, batch_size: int, *,
                      generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
        """:meth:`certify` for every image of ``x`` ``(N, C, H, W)`` at once.

        Returns:
            ``(prediction, radius)``: int64 ``(N,)`` (:attr:`ABSTAIN` = -1) and float64 ``(N,)``
            (image units; 0 where abstaining), on the CPU. With the same ``generator`` state, equal
            to ``certify`` called on ``x[0], x[1], ...`` in turn.
        """
        if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[0] == 0:
            raise ValueError(f"Smooth.certify_batch: x must be a non-empty batch (N, C, H, W), got "
                             f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        self._check("certify_batch", x, alpha, batch_size, n=n, n0=n0)
        tasks = [t for i in range(x.shape[0]) for t in ((x[i], int(n0)), (x[i], int(n)))]
        counts = self._counts("certify_batch", tasks, batch_size, generator)
        out = [self._decide(counts[2 * i], counts[2 * i + 1], int(n), alpha) for i in range(x.shape[0])]
        return (torch.tensor([p for p, _ in out], dtype=torch.int64),
                torch.tensor([r for _, r in out], dtype=torch.float64))

    def certify_adaptive(self, x: Tensor, radii: Sequence[float], *, alpha: float, n_max: int, batch_size: int,
                         generator: Optional[torch.Generator] = None) -> AdaptiveCertificate:
        """Certified or not at each of ``radii``, for every image of ``x`` ``(B, C, H, W)``, with as few
        draws as each image needs (at most ``n_max``).

        Procedure (a group-sequential Clopper-Pearson test): the draws are looked at after
        ``n_1 < n_2 < ... < n_K = n_max`` draws per image (:func:`advrobust.defenses.sequential.
        checkpoints`: 32, then x1.5 per look, fixed before any draw). At look k the top class c_A is
        the most frequent class of all draws so far, and its p_A gets the one-sided Clopper-Pearson
        lower and upper bounds at level ``alpha / (K * num_classes)``. An image stops at the first
        look where every threshold ``t`` in ``{1/2} U {Phi(r / sigma) : r in radii}`` is settled: certified
        (lower >= t) or out of reach (upper < t); at ``n_max`` it stops whatever the bounds say. Its
        answer is that of its last look, as in :meth:`certify`: abstain when the lower bound is below
        1/2, else c_A with radius ``sigma * Phi^-1(lower)``.

        Why this is valid: the lower bounds of all K looks and all ``num_classes`` classes hold at once
        with probability >= 1 - alpha (Bonferroni: K * num_classes bounds at alpha / (K * num_classes)
        each), whatever the stopping rule and whichever class the data select, so the probability that
        any certificate of an image is false (its class has p_A below the bound reported) is at most
        alpha, Cohen et al.'s guarantee. Bonferroni over looks rather than a confidence sequence: the
        bounds stay exact binomial ones, the looks are few (K ~ log(n_max / 32) / log 1.5: 21 for
        n_max = 100,000), and a factor K in alpha costs only ~log K in the exponent; the top class is
        selected from the estimation draws themselves (a union over classes, log(num_classes) in the
        exponent) instead of from Cohen's separate n0 draws, which would cost n0 draws per image. An
        early "not certified at r" (upper < t) holds with the same probability, but it can never
        produce a false certificate; it only ends the sampling. With every draw voting for c_A,
        alpha = 0.001, n_max = 100,000 and 3 classes, r = sigma is certified at the look of 72 draws
        and r = 2 sigma at 548 (Cohen et al.'s n0 + n = 100,100).

        Returns:
            :class:`AdaptiveCertificate`.

        Raises:
            ValueError: a radius < 0 or not finite, alpha outside (0, 1), NaN/Inf in the model's output
                (nothing is certified then). TypeError: x not a float tensor, non-integer n_max / batch_size.
        """
        radii_np = self._check_adaptive(x, radii, alpha, n_max, batch_size)
        looks = checkpoints(int(n_max))
        level = alpha / (len(looks) * self.num_classes)
        thresholds = np.concatenate([[0.5], norm.cdf(radii_np / self.sigma)])
        b = x.shape[0]
        counts = np.zeros((b, self.num_classes), dtype=np.int64)
        lower, samples, active = np.zeros(b), np.zeros(b, dtype=np.int64), np.ones(b, dtype=bool)
        for previous, n_k in zip(np.concatenate([[0], looks[:-1]]), looks):
            idx = np.flatnonzero(active)  # every active image has had the `previous` draws
            counts[idx] += self._votes(x[torch.from_numpy(idx)], int(n_k - previous), batch_size, generator)
            samples[idx] = n_k
            lo, hi = clopper_pearson(counts[idx].max(1), n_k, level)
            lower[idx] = lo
            unsettled = ((lo[:, None] < thresholds) & (thresholds <= hi[:, None])).any(1)
            active[idx[~unsettled]] = False
            if not active.any():
                break
        decided = lower >= 0.5
        radius = np.where(decided, self.sigma * norm.ppf(np.where(decided, lower, 0.5)), 0.0)
        return AdaptiveCertificate(
            prediction=torch.from_numpy(np.where(decided, counts.argmax(1), self.ABSTAIN)),
            certified=torch.from_numpy(decided[:, None] & (radius[:, None] >= radii_np[None, :])),
            radius=torch.from_numpy(radius), samples=torch.from_numpy(samples), p_lower=torch.from_numpy(lower),
            radii=torch.from_numpy(radii_np))

    # -- parts -------------------------------------------------------------------------------------
    def _check_adaptive(self, x: Tensor, radii, alpha: float, n_max: int, batch_size: int) -> np.ndarray:
        """Checked arguments of :meth:`certify_adaptive`; the radii as float64 ``(R,)``."""
        if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[0] == 0:
            raise ValueError(f"Smooth.certify_adaptive: x must be a non-empty batch (B, C, H, W), got "
                             f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        self._check("certify_adaptive", x, alpha, batch_size, n_max=n_max)
        r = np.atleast_1d(np.asarray(radii.cpu() if isinstance(radii, Tensor) else radii, dtype=np.float64))
        if r.ndim != 1 or r.size == 0 or not np.all(np.isfinite(r)) or np.any(r < 0):
            raise ValueError(f"Smooth.certify_adaptive: radii must be finite L2 radii >= 0 (image units), a "
                             f"non-empty list, got {r.tolist()}")
        return r

    @torch.no_grad()
    def _votes(self, x: Tensor, draws: int, batch_size: int, generator: Optional[torch.Generator]) -> np.ndarray:
        """Class counts int64 ``(A, num_classes)`` of ``draws`` noisy copies of each image of ``x`` ``(A, ...)``,
        the images sharing forward passes of ``batch_size`` rows."""
        device = model_device(self.base_classifier) or x.device
        x, k = x.to(device), self.num_classes
        counts = torch.zeros(x.shape[0] * k, dtype=torch.int64, device=device)
        with eval_mode(self.base_classifier):
            for owner, noisy in noisy_passes(x, draws, batch_size, self.sigma, generator):
                logits = self.base_classifier(noisy)
                if logits.dim() != 2 or logits.shape[1] != k:
                    raise ValueError(f"Smooth.certify_adaptive: the classifier returned shape {tuple(logits.shape)}, "
                                     f"expected (batch, {k}) logits (num_classes = {k})")
                check_finite_output("Smooth.certify_adaptive", logits, NOISY_OUTPUT, NOISY_HINT)
                counts += torch.bincount(owner * k + logits.argmax(1), minlength=counts.numel())
        return counts.view(-1, k).cpu().numpy()

    def _decide(self, selection: Tensor, estimation: Tensor, n: int, alpha: float) -> Tuple[int, float]:
        c_a = int(selection.argmax())
        p_a = lower_confidence_bound(int(estimation[c_a]), n, alpha)
        if p_a < 0.5:
            return self.ABSTAIN, 0.0
        return c_a, certified_radius(p_a, self.sigma)

    def _check(self, name: str, x: Tensor, alpha: float, batch_size: int, **counts: int) -> None:
        """Checked arguments; ``x`` one image or a batch, finite (a NaN pixel has no certificate)."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"Smooth.{name}: x must be a float tensor (one image, C x H x W), got "
                            f"{type(x).__name__ if not isinstance(x, Tensor) else x.dtype}")
        check_finite(f"Smooth.{name}", x if x.dim() > 3 else x[None], "x",
                     "a NaN/Inf pixel has no certificate: clean, mask or reject those images first")
        a = check_number(f"Smooth.{name}", "alpha", alpha, positive=True)
        if not a < 1:
            raise ValueError(f"Smooth.{name}: alpha must be in (0, 1), got {alpha}")
        check_number(f"Smooth.{name}", "batch_size", batch_size, integer=True, positive=True)
        for what, v in counts.items():
            check_number(f"Smooth.{name}", what, v, integer=True, positive=True)

    def _noisy_chunks(self, tasks: Sequence[Tuple[Tensor, int]], batch_size: int,
                      generator: Optional[torch.Generator], device) -> Iterator[Tuple[Tensor, int]]:
        """``(noisy copies (k, C, H, W), task index)`` in draw order: each task's draws in chunks of
        ``batch_size`` (the reference's chunks)."""
        for t, (x, num) in enumerate(tasks):
            x = x.to(device)
            remaining = num
            while remaining > 0:
                k = min(batch_size, remaining)
                noise = torch.randn((k,) + tuple(x.shape), generator=generator, device=device, dtype=x.dtype)
                yield noise.mul_(self.sigma).add_(x), t
                remaining -= k

    @torch.no_grad()
    def _counts(self, name: str, tasks: Sequence[Tuple[Tensor, int]], batch_size: int,
                generator: Optional[torch.Generator]) -> Tensor:
        """Class counts ``(len(tasks), num_classes)`` int64 of the noisy draws of every task, the draws
        streamed into forward passes of exactly ``batch_size`` rows (the last may be shorter)."""
        device = model_device(self.base_classifier) or tasks[0][0].device
        counts = torch.zeros(len(tasks), self.num_classes, dtype=torch.int64, device=device)
        chunks: List[Tensor] = []
        owners: List[Tuple[int, int]] = []  # (task, rows) of each chunk, in order
        filled = 0

        def flush(rows: int) -> None:
            nonlocal chunks, owners, filled
            batch = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
            logits = self.base_classifier(batch[:rows])
            check_finite_output(f"Smooth.{name}", logits, NOISY_OUTPUT, NOISY_HINT)
            pred = logits.argmax(1)
            start, rest = 0, []
            for t, k in owners:
                take = min(k, rows - start)
                if take > 0:
                    counts[t] += torch.bincount(pred[start:start + take], minlength=self.num_classes)
                    start += take
                if k > take:
                    rest.append((t, k - take))
            chunks = [batch[rows:]] if rows < batch.shape[0] else []
            owners, filled = rest, filled - rows

        with eval_mode(self.base_classifier):
            for chunk, t in self._noisy_chunks(tasks, batch_size, generator, device):
                chunks.append(chunk)
                owners.append((t, chunk.shape[0]))
                filled += chunk.shape[0]
                while filled >= batch_size:
                    flush(batch_size)
            if filled:
                flush(filled)
        return counts.cpu()
