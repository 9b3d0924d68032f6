"""One-pixel attack by differential evolution (Su et al. 2017/2019; Ćiprijanović et al. 2022
(DeepAdversaries), section 2.3), batched.

A candidate changes ``k`` pixels; its genes are, per pixel, ``(row, col, v_1, ..., v_C)``, so a
candidate has ``D = k * (2 + C)`` genes. Rows/cols are continuous in ``[0, H)`` / ``[0, W)``
(floored when the image is built); values are continuous within the per-channel data range
(no 0..255 grid, astronomy images are floats) or, with ``add=True``, amounts added to the pixel.

Every generation of the search is, for the whole batch at once:

1. :func:`advrobust.ops.de_draws` (random numbers, seeded) -> :func:`advrobust.ops.de_trial`
   (DE/rand/1/bin mutation, crossover and bounds for all running images x population);
2. :func:`advrobust.ops.de_build` -> ONE model forward over all running images x candidates,
   split only by memory into chunks of at most ``memory_budget`` bytes of images;
3. the objective turns that forward's outputs into fitness (lower is better) and per-candidate
   success; :func:`advrobust.ops.de_select_` keeps the better of parent and trial;
4. an image with a successful candidate stops there (its pixels and the generation are
   recorded) — read from the same forward pass, no separate success check.

The initial population (uniform within the bounds) is scored once; an image that one of its
random candidates already fools stops with ``iterations = 0``.

``OnePixel(...)(x, y)`` returns the adversarial batch like every attack; ``.run(x, y)`` returns
the :class:`OnePixelResult` with the success flags and the search record.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch
from torch import Tensor, nn

from advrobust import ops
from advrobust.attacks.base import Attack, AttackResult, check_fitness
from advrobust.checks import Bound, check_number, clamp_range
from advrobust.attacks.losses import ClassifierObjective, ObjectiveFn, resolve_objective
from advrobust.ops.de import de_pixels
from advrobust.attacks.incremental import AUTO_MAX_COST_RATIO, IncrementalScorer, Unsupported

__all__ = ["OnePixel", "OnePixelResult", "one_pixel"]

_MiB = 1 << 20


#: the fallback notes already said in this process (:meth:`OnePixel._say_once`): Python's own once-only
#: filter forgets them whenever a warning filter changes, which a scan does chunk after chunk
_SAID: set = set()


@dataclass
class OnePixelResult(AttackResult):
    """What :meth:`OnePixel.run` returns: :class:`~advrobust.attacks.AttackResult` plus the search record.

    Attributes:
        x_adv: ``(B, C, H, W)`` the images with the best candidate applied (the first successful
            one for a fooled image, the lowest-fitness one otherwise).
        success: ``(B,)`` bool, the objective's success flag for ``x_adv``.
        iterations: ``(B,)`` int64, DE generations run for the image: 0 when the initial
            random population already succeeded, ``max_iter`` for an image never fooled.
        pixels: ``(B, k, 2)`` int64 ``(row, col)`` of the changed pixels.
        values: ``(B, k, C)`` the values written into (or, with ``add``, added to) them.
        fitness: ``(B,)`` the objective's fitness of ``x_adv`` (lower is better).
    """

    iterations: Tensor
    pixels: Tensor
    values: Tensor
    fitness: Tensor


def _repeat_rows(t: Tensor, n: int) -> Tensor:
    """(b, ...) -> (b * n, ...), each row repeated n times consecutively."""
    return t.repeat_interleave(n, dim=0)


class OnePixel(Attack):
    r"""Batched one-pixel (k-pixel) attack by differential evolution.

    Distance: L0 (``k`` pixels, all channels of each). Ćiprijanović et al. (2022) cap the search at
    80 generations and
    its code uses a population of 400. The default DE variant is the one of scipy's
    ``differential_evolution`` that the public one-pixel implementations run (torchattacks,
    one-pixel-attack-keras): DE/best/1/bin with a mutation factor dithered uniformly in
    [0.5, 1) per generation and CR = 1; Su et al.'s paper variant is
    ``strategy="rand1", F=0.5`` (both on the same fused :func:`advrobust.ops.de_trial`: best/1
    replaces the first donor by each population's best candidate).

    Args:
        model: any ``nn.Module``, called as ``model(images, *extra)`` on batches of candidates.
        pixels: ``k``, the number of pixels changed per image.
        population: ``P``, candidates per image (>= 4; Ćiprijanović et al. 2022: 400).
        max_iter: generation cap, >= 1 (Ćiprijanović et al. 2022: 80).
        strategy: ``"best1"`` (mutant = best + F (r2 - r3), default) or ``"rand1"``
            (r1 + F (r2 - r3), Su et al.).
        F: differential weight, a float, or ``(low, high)`` to draw it uniformly per generation
            (dither; default ``(0.5, 1.0)`` as scipy; Su et al.: 0.5).
        CR: crossover rate (default 1: the mutant is taken whole, as Su et al. and scipy's
            recombination=1).
        targeted: ``y`` holds target classes (or target redshifts for ``"photoz"``).
        objective: ``"classifier"`` (fitness = probability of the true class, or minus the
            target's), ``"photoz"`` (fitness = -|dz|, or distance to the target redshift; success
            beyond/within ``threshold``) or a callable ``(output (N, ...), y (N, ...)) ->
            (fitness (N,), success (N,) bool)``, lower fitness better. See
            :mod:`advrobust.attacks.losses`.
        threshold: ``|dz|`` success cut of the photo-z objective (default 0.05).
        add: add the values to the pixels instead of replacing them (Ćiprijanović et al. 2022 replace).
        lo, hi: range of the replacing values: float or per-channel ``(C,)``; default the
            per-channel min / max of the attacked batch (the whole batch, so an image's search
            range depends on the other images in its batch: pass lo/hi to make it per-survey).
            With ``add``, the valid range the changed images are clamped to (default: no clamp).
        add_range: with ``add``, the added values lie in ``[-add_range, add_range]`` (float or
            per-channel ``(C,)``); default the per-channel data range ``max - min`` of the batch.
        resample: redraw out-of-bounds mutant genes uniformly (True) or clip them.
        memory_budget: bytes of candidate images built and scored per forward chunk (a chunk holds
            whole populations of several images, or, when one population exceeds the budget, a
            slice of one image's population). Default:
            256 MiB on a GPU; 16 MiB (about 136 images of 3x100x100 float32) on the CPU, where
            ConvNet's forward runs about twice as fast per image on ~100-image chunks as on
            ~2000-image ones (cache; measured in bench/RESULTS_attacks.md).
        incremental: score candidates by recomputing only the cone of each layer that the changed
            pixels reach (:class:`~advrobust.attacks.incremental.IncrementalScorer`; same outputs
            as the full forward within round-off). ``"auto"`` (default): where the model is
            supported, passes a self-check on the first image and keeps under
            ``AUTO_MAX_COST_RATIO`` (0.1) of the convolutions' multiply-adds (ConvNet, the small
            and Campagne photo-z CNNs; not ResNet18 or the inception model, whose cones cover most
            of their maps after a few layers); otherwise full forward passes, said once with the reason (which
            layer). ``True``: raise ``ValueError`` where it cannot be used. ``False``: full forward passes.
        seed: seed of the DE's random numbers (a generator on x's device); or pass ``generator``.
        progress: show a tqdm bar over generations.
        channels_last: model input memory format, see :class:`~advrobust.attacks.Attack`.

    Shape:
        x: ``(B, C, H, W)`` float; y: ``(B,)`` int64 classes (``"classifier"``) or float
        redshifts (``"photoz"``); extra: ``(B, ...)`` tensors repeated per candidate, never
        perturbed. ``atk(...)`` returns the adversarial batch ``(B, C, H, W)``; ``atk.run(...)`` an
        :class:`OnePixelResult`.

    Example:
        >>> atk = OnePixel(model, pixels=1, population=400, max_iter=80, seed=0)
        >>> x_adv = atk(images, labels)
        >>> res = atk.run(images, labels)
        >>> res.success_rate, res.iterations, res.pixels
        >>> res = OnePixel(photoz_model, objective="photoz", max_iter=20).run(images, z_spec, ebv)
    """

    _min_dim = 4

    def __init__(self, model: nn.Module, pixels: int = 1, population: int = 400, max_iter: int = 80, *,
                 strategy: str = "best1", F: Union[float, Tuple[float, float]] = (0.5, 1.0), CR: float = 1.0,
                 targeted: bool = False,
                 objective: Union[str, ObjectiveFn] = "classifier", threshold: float = 0.05,
                 add: bool = False, lo: Bound = None, hi: Bound = None, add_range: Bound = None,
                 resample: bool = True, memory_budget: Optional[int] = None,
                 incremental: Union[str, bool] = "auto", seed: Optional[int] = None,
                 generator: Optional[torch.Generator] = None, progress: bool = False,
                 channels_last: Optional[bool] = None) -> None:
        super().__init__(model, lo=lo, hi=hi, channels_last=channels_last)
        name = "OnePixel"
        self.pixels = int(check_number(name, "pixels", pixels, integer=True, positive=True))
        self.population = int(check_number(name, "population", population, integer=True))
        if self.population < 4:
            raise ValueError(f"{name}: population must be >= 4 (DE/rand/1 needs 3 donors), got {population}")
        self.max_iter = int(check_number(name, "max_iter", max_iter, integer=True, positive=True))
        if strategy not in ("best1", "rand1"):
            raise ValueError(f"{name}: strategy must be 'best1' or 'rand1', got {strategy!r}")
        self.strategy = strategy
        if isinstance(F, (tuple, list)):
            if len(F) != 2:
                raise ValueError(f"{name}: F must be a float or a (low, high) pair, got {F!r}")
            self.F = (check_number(name, "F[0]", F[0]), check_number(name, "F[1]", F[1]))
            if self.F[0] > self.F[1]:
                raise ValueError(f"{name}: F = (low, high) needs low <= high, got {F!r}")
        else:
            self.F = check_number(name, "F", F)
        self.CR = check_number(name, "CR", CR)
        if self.CR > 1:
            raise ValueError(f"{name}: CR must be in [0, 1], got {CR}")
        self.targeted = bool(targeted)
        self.objective = resolve_objective(objective, model, targeted=self.targeted, threshold=threshold)
        self.add = bool(add)
        self.add_range = add_range
        self.resample = bool(resample)
        self.memory_budget = None if memory_budget is None else \
            int(check_number(name, "memory_budget", memory_budget, integer=True, positive=True))
        if incremental not in ("auto", True, False):
            raise ValueError(f"{name}: incremental must be 'auto', True or False, got {incremental!r}")
        self.incremental = incremental
        self.seed = seed
        self.generator = generator
        self.progress = bool(progress)

    # ------------------------------------------------------------------ pieces
    def _gene_bounds(self, x: Tensor, lo: Bound, hi: Bound) -> Tuple[Tensor, Tensor]:
        """(D,) lower and upper bounds: per pixel [0, H), [0, W), then C value bounds."""
        B, C, H, W = x.shape
        dmin, dmax = x.amin(dim=(0, 2, 3)), x.amax(dim=(0, 2, 3))
        if self.add:
            if self.add_range is None:
                r = dmax - dmin
            else:
                r = torch.as_tensor(self.add_range, dtype=x.dtype, device=x.device).reshape(-1).expand(C)
                if bool((r < 0).any()):
                    raise ValueError(f"OnePixel: add_range must be >= 0, got {r.tolist()}")
            vlo, vhi = -r, r
        else:
            vlo = dmin if lo is None else torch.as_tensor(lo, dtype=x.dtype, device=x.device).reshape(-1).expand(C)
            vhi = dmax if hi is None else torch.as_tensor(hi, dtype=x.dtype, device=x.device).reshape(-1).expand(C)
            if bool((vlo > vhi).any()):
                raise ValueError(f"OnePixel: value range lower {vlo.tolist()} > upper {vhi.tolist()}; "
                                 "check lo/hi against the data")
        zero = torch.zeros(1, dtype=x.dtype, device=x.device)
        lower = torch.cat([zero, zero, vlo])
        upper = torch.cat([zero + H, zero + W, vhi])
        return lower.repeat(self.pixels).contiguous(), upper.repeat(self.pixels).contiguous()

    def _chunks(self, x: Tensor, P: int) -> Tuple[int, int]:
        """(images per chunk, candidates per chunk) so that one chunk's images fit the memory budget."""
        per = x[0].numel() * x.element_size()
        budget = self.memory_budget
        if budget is None:
            budget = (16 if x.device.type == "cpu" else 256) * _MiB
        per_chunk = max(1, budget // per)
        if per_chunk >= P:
            return per_chunk // P, P
        return 1, per_chunk

    def _build(self, x: Tensor, cand: Tensor, lo: Bound, hi: Bound) -> Tensor:
        """The (n, P, C, H, W) candidate images; with ``add``, the changed pixels (only those)
        clamped to the valid range lo/hi."""
        imgs = ops.de_build(x, cand, add=self.add)
        if self.add and (lo is not None or hi is not None):
            n, P, C, H, W = imgs.shape
            batch = imgs.flatten(0, 1)  # a view, in x's memory format
            rows, cols = (t.view(n * P, -1) for t in de_pixels(cand, H, W))
            which = torch.arange(n * P, device=x.device)[:, None].expand_as(rows)
            changed = batch[which, :, rows, cols]  # (n P, k, C)
            batch[which, :, rows, cols] = clamp_range(changed.transpose(1, 2), lo, hi).transpose(1, 2)
        return imgs

    @torch.no_grad()
    def _incremental_scorer(self, x: Tensor, extra: Tuple[Tensor, ...], lo: Bound, hi: Bound,
                            lower: Tensor) -> Optional[IncrementalScorer]:
        """The incremental scorer for the clean batch x, or None (full forward passes) as
        ``self.incremental`` asks; checked against the full forward on one candidate of image 0."""
        if self.incremental is False:
            return None
        B, C, H, W = x.shape
        try:
            scorer = IncrementalScorer(self.model, x, extra)
            genes = torch.cat([x.new_tensor([(H - 1) / 2, (W - 1) / 2]), lower[2:2 + C]])
            probe = genes.repeat(self.pixels).view(1, 1, self.pixels, 2 + C)
            probe[0, 0, :, 0] += torch.arange(self.pixels, dtype=x.dtype, device=x.device)  # k distinct pixels
            got = scorer.score(torch.zeros(1, dtype=torch.int64, device=x.device), probe, add=self.add, lo=lo, hi=hi)
            want = self.model(self._build(x[:1], probe, lo, hi).flatten(0, 1), *(e[:1] for e in extra))
            tol = (1e-4 if x.dtype != torch.float64 else 1e-10) * float(want.abs().max().clamp_min(1e-30))
            if got.shape != want.shape or not bool(((got - want).abs() <= tol).all()):
                raise Unsupported("its outputs differ from the full forward pass on a test candidate")
        except Unsupported as err:
            if self.incremental is True:
                raise ValueError(f"OnePixel: incremental=True, but the model cannot be scored incrementally: "
                                 f"{err}") from None
            self._say_once(f"OnePixel: scoring candidates by full forward passes: the model cannot be scored "
                           f"incrementally: {err}")
            return None
        if self.incremental == "auto" and scorer.cost_ratio is not None and scorer.cost_ratio > AUTO_MAX_COST_RATIO:
            self._say_once(f"OnePixel: scoring candidates by full forward passes: the changed pixels' cones keep "
                           f"{scorer.cost_ratio:.0%} of the convolutions' multiply-adds, too many for incremental "
                           f"scoring to win (it does below {AUTO_MAX_COST_RATIO:.0%}; incremental=True forces it)")
            return None
        return scorer

    def _say_once(self, message: str) -> None:
        if message not in _SAID:  # once per process: a scan builds an attack per chunk
            _SAID.add(message)
            warnings.warn(message, RuntimeWarning, stacklevel=4)

    @torch.no_grad()
    def _score(self, x: Tensor, cand: Tensor, y: Tensor, extra: Tuple[Tensor, ...], lo: Bound,
               hi: Bound, inc: Optional[IncrementalScorer] = None,
               rows: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Fitness and success (n, P) of candidates (n, P, D) on images x (n, C, H, W); with ``inc``,
        scored incrementally, ``rows`` (n,) naming the images in the scorer's clean batch."""
        n, P, _ = cand.shape
        C = x.shape[1]
        cand4 = cand.view(n, P, self.pixels, 2 + C)
        nb, npc = (n, P) if inc is not None else self._chunks(x, P)
        fit = torch.empty((n, P), dtype=cand.dtype, device=cand.device)
        succ = torch.empty((n, P), dtype=torch.bool, device=cand.device)
        for b0 in range(0, n, nb):
            b1 = min(n, b0 + nb)
            for p0 in range(0, P, npc):
                p1 = min(P, p0 + npc)
                c = cand4[b0:b1, p0:p1]
                m = p1 - p0
                if inc is not None:
                    out = inc.score(rows[b0:b1], c, add=self.add, lo=lo, hi=hi)
                else:
                    imgs = self._build(x[b0:b1], c if p1 - p0 == P else c.contiguous(), lo, hi)
                    inp = imgs.flatten(0, 1)  # channels-last already when x is (see forward)
                    out = self.model(inp, *(_repeat_rows(e[b0:b1], m) for e in extra))
                f, s = self.objective(out, _repeat_rows(y[b0:b1], m))
                if not (isinstance(f, Tensor) and isinstance(s, Tensor) and f.numel() == s.numel() == m * (b1 - b0)):
                    raise ValueError(f"OnePixel: the objective must return (fitness (N,), success (N,)) for the "
                                     f"N={out.shape[0]} candidate images it is given, got shapes "
                                     f"{getattr(f, 'shape', type(f).__name__)} and {getattr(s, 'shape', type(s).__name__)}")
                fit[b0:b1, p0:p1] = f.view(b1 - b0, m)
                succ[b0:b1, p0:p1] = s.view(b1 - b0, m)
        return fit, succ

    def _check_y(self, x: Tensor, y: Optional[Tensor]) -> None:
        if x.dim() != 4:
            raise ValueError(f"OnePixel: x must be an image batch (B, C, H, W), got shape {tuple(x.shape)}")
        if self.pixels > x.shape[2] * x.shape[3]:
            raise ValueError(f"OnePixel: pixels = {self.pixels} is more than the {x.shape[2]}x{x.shape[3]} pixels "
                             "of a stamp")
        if y is None:
            raise ValueError("OnePixel: y is required (true classes, target classes or redshifts)")
        if isinstance(self.objective, ClassifierObjective):
            if y.dtype != torch.int64 or y.dim() != 1:
                raise TypeError(f"OnePixel: the classifier objective needs y as (B,) int64 class indices, "
                                f"got {tuple(y.shape)} {y.dtype}")

    # ------------------------------------------------------------------ search
    @torch.no_grad()
    def forward(self, x, y, lo, hi, extra) -> OnePixelResult:
        self._check_y(x, y)
        self._check_targets(x, y, extra)
        gen = self.generator
        if gen is None and self.seed is not None:
            gen = torch.Generator(device=x.device)
            gen.manual_seed(int(self.seed))
        lower, upper = self._gene_bounds(x, lo, hi)
        search = self._start(x, y, extra, lo, hi, lower, upper, gen)
        factors = self._factors(gen, x.device)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=self.max_iter, desc="OnePixel", unit="gen")
        it = 0
        while True:
            search.retire(it)
            if search.active.numel() == 0 or it >= self.max_iter:
                break
            it += 1
            n = search.active.numel()
            self._generation(search, lower, upper, factors[it - 1], gen, lo, hi)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(running=n)
        if bar is not None:
            bar.close()
        search.keep_best_of_the_rest()
        return self._search_result(x, search, lo, hi)

    def _start(self, x: Tensor, y: Tensor, extra: Tuple[Tensor, ...], lo: Bound, hi: Bound, lower: Tensor,
               upper: Tensor, gen: Optional[torch.Generator]) -> "_Search":
        """The search after scoring the initial random population ``(B, P, D)`` drawn in [lower, upper)."""
        B, C = x.shape[:2]
        P, D, dev, dt = self.population, self.pixels * (2 + C), x.device, x.dtype
        active = torch.arange(B, device=dev)  # original indices of the images still running
        pop = lower + torch.rand((B, P, D), dtype=dt, device=dev, generator=gen) * (upper - lower)
        xs = x
        if self._use_channels_last(x):  # de_build then builds channels-last candidates: no copy for the model
            xs = x.contiguous(memory_format=torch.channels_last)
        inc = self._incremental_scorer(x, extra, lo, hi, lower)
        fit, succ = self._score(xs, pop, y, extra, lo, hi, inc, active)
        check_fitness("OnePixel", fit, active)
        return _Search(
            best=torch.empty((B, D), dtype=dt, device=dev), best_fit=torch.empty(B, dtype=dt, device=dev),
            success=torch.zeros(B, dtype=torch.bool, device=dev),
            iterations=torch.full((B,), self.max_iter, dtype=torch.int64, device=dev),
            active=active, xs=xs, ys=y, es=extra, inc=inc,
            pop=pop.clone(), fit=fit.clone(),  # de_select_ works in place; keep cand intact
            cand=pop, cand_fit=fit, succ=succ)

    def _factors(self, gen: Optional[torch.Generator], device: torch.device) -> list:
        """The mutation factor of each generation: ``F``, or dithered, drawn up front (one sync)."""
        if isinstance(self.F, tuple):
            u = torch.rand(self.max_iter, dtype=torch.float64, device=device, generator=gen).tolist()
            return [self.F[0] + v * (self.F[1] - self.F[0]) for v in u]
        return [self.F] * self.max_iter

    def _generation(self, search: "_Search", lower: Tensor, upper: Tensor, F: float,
                    gen: Optional[torch.Generator], lo: Bound, hi: Bound) -> None:
        """One DE generation of the running images: trial candidates, their scores, selection."""
        n, P, D = search.pop.shape
        draws = ops.de_draws(n, P, D, dtype=search.pop.dtype, device=search.pop.device, generator=gen)
        if self.strategy == "best1":
            donors = draws.donors.clone()
            donors[:, :, 0] = search.fit.argmin(dim=1, keepdim=True)
            draws = draws._replace(donors=donors)
        trial = ops.de_trial(search.pop, draws, lower, upper, F=F, CR=self.CR, resample=self.resample)
        trial_fit, search.succ = self._score(search.xs, trial, search.ys, search.es, lo, hi, search.inc,
                                             search.active)
        check_fitness("OnePixel", trial_fit, search.active)
        search.cand, search.cand_fit = trial, trial_fit
        ops.de_select_(search.pop, search.fit, trial, trial_fit)

    def _search_result(self, x: Tensor, search: "_Search", lo: Bound, hi: Bound) -> OnePixelResult:
        """The images with each one's chosen candidate applied, and the record of the search."""
        B, C, H, W = x.shape
        best4 = search.best.view(B, 1, self.pixels, 2 + C)
        x_adv = self._build(x, best4, lo, hi).squeeze(1)
        rows, cols = de_pixels(best4[:, 0], H, W)
        values = best4[:, 0, :, 2:].clone()
        if self.add:  # the change actually applied, after the lo/hi clamp: (B, k, C)
            b = torch.arange(B, device=x.device)[:, None]
            values = (x_adv - x)[b, :, rows, cols]
        return OnePixelResult(
            x_adv=x_adv, success=search.success, iterations=search.iterations,
            pixels=torch.stack([rows, cols], dim=-1), values=values, fitness=search.best_fit,
        )


@dataclass
class _Search:
    """A running one-pixel search: the record of all ``B`` images and the state of the ``n`` still running.

    Attributes:
        best, best_fit, success, iterations: ``(B, D)``, ``(B,)``, ``(B,)`` bool, ``(B,)`` int64: each
            image's chosen candidate, its fitness, whether it fooled the model, generations run.
        active: ``(n,)`` the batch indices of the running images; xs, ys, es: their images, targets and
            extra inputs; inc: the incremental scorer (or None).
        pop, fit: ``(n, P, D)`` population and ``(n, P)`` fitness.
        cand, cand_fit, succ: the candidates scored last ``(n, P, D)``, their fitness and success ``(n, P)``.
    """

    best: Tensor
    best_fit: Tensor
    success: Tensor
    iterations: Tensor
    active: Tensor
    xs: Tensor
    ys: Tensor
    es: Tuple[Tensor, ...]
    inc: Optional[IncrementalScorer]
    pop: Tensor
    fit: Tensor
    cand: Tensor
    cand_fit: Tensor
    succ: Tensor

    def retire(self, it: int) -> None:
        """Record the images with a successful candidate after ``it`` generations (the lowest-fitness
        successful one) and stop running them: one host sync, the early-stop decision."""
        done = self.succ.any(dim=1)
        if not bool(done.any()):
            return
        d = done.nonzero().squeeze(1)
        fit = self.cand_fit[d]
        j = torch.where(self.succ[d], fit, torch.full_like(fit, float("inf"))).argmin(dim=1)
        orig = self.active[d]
        self.best[orig] = self.cand[d, j]
        self.best_fit[orig] = self.cand_fit[d, j]
        self.success[orig] = True
        self.iterations[orig] = it
        keep = (~done).nonzero().squeeze(1)
        self.active, self.pop, self.fit = self.active[keep], self.pop[keep], self.fit[keep]
        self.xs, self.ys = self.xs[keep], self.ys[keep]
        self.es = tuple(e[keep] for e in self.es)

    def keep_best_of_the_rest(self) -> None:
        """The images never fooled keep the lowest-fitness candidate of their population."""
        if self.active.numel():
            j = self.fit.argmin(dim=1)
            r = torch.arange(self.active.numel(), device=self.fit.device)
            self.best[self.active] = self.pop[r, j]
            self.best_fit[self.active] = self.fit[r, j]


def one_pixel(model: nn.Module, x: Tensor, y: Tensor, *extra: Tensor, **kwargs) -> Tensor:
    """Functional :class:`OnePixel`: ``one_pixel(model, x, y, *extra, pixels=1, population=400, ...)``,
    the adversarial batch (use ``OnePixel(...).run`` for the :class:`OnePixelResult`)."""
    return OnePixel(model, **kwargs)(x, y, *extra)
