"""Incremental scoring of one-pixel candidates: the model's output for images that differ from a clean
image in ``k`` pixels, recomputing only the cone of each layer that the pixels reach.

The model is traced once per batch of clean images with :func:`torch.fx.experimental.proxy_tensor.make_fx`
(an ATen-level ``torch.fx`` graph with the real shapes; Python checks in ``forward`` run on real tensors).
The clean activations that later layers gather from are computed once and kept
(:attr:`IncrementalScorer.bytes_per_image`). A candidate then flows through the graph as one of:

* a **window** state (4-D activations): per changed pixel ``j`` one window of fixed size ``h x w`` at a
  per-candidate offset ``(r0, c0)`` holding the candidate's new values there; everywhere else the
  activation equals the clean one. Every window lies inside the map and covers the cone of its pixel
  (the set of positions the pixel can reach), so the union of the windows holds every changed
  position and reading "clean, overwritten by the windows" gives the exact new activation.
  Convolutions (any stride, padding, dilation, groups) and max / average pooling (padding, ceil mode,
  ``count_include_pad``, ``divisor_override``) recompute their output window from the input gathered
  around it (zero / ``-inf`` outside the map, as their padding); point-wise layers (ReLU, PReLU, leaky
  ReLU, batch norm in eval form, arithmetic with scalars or per-channel constants, ...) act on the
  windows; a sum of two window states (residual blocks) and a channel concatenation (inception cells)
  carry, per pixel, the bounding box of their inputs' windows; zero padding shifts the windows.
* a **flat window** state: the flattening of a window state (possibly concatenated with tensors that do
  not depend on the image, such as E(B-V)); the following linear layer becomes
  ``clean_output + delta @ W[cone, :]`` (a sparse-dense product over the changed inputs only).
  A global mean over the map (``mean(dim=(2, 3))``) likewise becomes ``clean_mean + sum(delta) / HW``.
* a **dense** state ``(N, ...)``: the layers after that, run in full on the candidates (they are small).

Memory kept per clean image (float32, :attr:`IncrementalScorer.bytes_per_image`): 1.6 MiB for the ConvNet
on 3x100x100, 1.5 MiB morphology_small, 1.3 MiB photoz_small and 4.2 MiB campagne_cnn on 5x64x64,
8.4 MiB ResNet18 on 3x100x100, 22 MiB pasquet_inception; the windows of a chunk of candidates
(``chunk``, 4096 by default) come on top, a few times the chunk's candidate count times the largest
window (C x h x w) of a layer.

Any other operation reached by a window (or a model in training mode) makes the model unsupported:
:class:`Unsupported` names the operation and the module it comes from, and
:class:`~advrobust.attacks.OnePixel` falls back to full forward passes.
"""
from __future__ import annotations

import operator
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advrobust.checks import clamp_range
from advrobust.ops.de import de_pixels

__all__ = ["IncrementalScorer", "Unsupported", "AUTO_MAX_COST_RATIO"]

#: ``OnePixel(incremental="auto")`` scores incrementally only below this :attr:`IncrementalScorer.cost_ratio`:
#: the windows' convolutions run a few times less efficiently per multiply-add than full ones (small maps,
#: gathers), so on 1 CPU thread, 100-400 candidates, campagne_cnn (ratio 0.03) scored 5x faster than its
#: full forward and the ConvNet (0.014) 31x, while pasquet_inception (0.25) and ResNet18 on 100x100
#: (0.69) were slower than theirs.
AUTO_MAX_COST_RATIO = 0.1

aten = torch.ops.aten


class Unsupported(Exception):
    """The model (or one of its operations) cannot be scored incrementally; the message says which."""


@dataclass
class _Win:
    """One pixel's window of a 4-D activation: offsets r0, c0 (N,) int64, new values (N, C, h, w)."""
    r0: Tensor
    c0: Tensor
    vals: Tensor


@dataclass
class _Spatial:
    """Image-dependent 4-D activation of N candidates: clean (B, C, H, W) (None where no layer gathers
    from it) overwritten by the windows; ``shape`` is the per-image (C, H, W)."""
    clean: Optional[Tensor]
    shape: Tuple[int, int, int]
    wins: List[_Win]


@dataclass
class _Flat:
    """A flattened window state inside a feature vector: positions ``start .. start + C*H*W`` of it."""
    src: _Spatial
    src_clean: Tensor
    start: int


@dataclass
class _Dense:
    value: Tensor


# operations applied to each window's values as they are (position-independent, element-wise or per channel)
_POINTWISE = {
    aten.relu.default, aten._prelu_kernel.default, aten.leaky_relu.default, aten.hardtanh.default,
    aten.elu.default, aten.gelu.default, aten.silu.default, aten.sigmoid.default, aten.tanh.default,
    aten.asinh.default, aten.abs.default, aten.neg.default, aten.exp.default, aten.log1p.default,
    aten.softplus.default, aten.hardswish.default, aten.clamp.default, aten.clamp_min.default,
    aten.clamp_max.default, aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor,
    aten.add.Scalar, aten.sub.Scalar, aten.mul.Scalar, aten.div.Scalar, aten.native_batch_norm.default,
    aten._native_batch_norm_legit_no_training.default, aten.clone.default, aten.detach.default,
}
_BATCH_NORMS = {aten.native_batch_norm.default, aten._native_batch_norm_legit_no_training.default}
# operations run in full on dense candidate batches (after the first dense layer)
_DENSE = _POINTWISE | {
    aten.addmm.default, aten.mm.default, aten.t.default, aten.cat.default, aten.view.default,
    aten._unsafe_view.default, aten.reshape.default, aten.unsqueeze.default, aten.squeeze.dim,
    aten._softmax.default, aten._log_softmax.default, aten.mean.dim, aten.sum.dim_IntList,
    aten.linear.default, aten.permute.default, aten.transpose.int, operator.getitem,
}
_VIEWS = {aten.view.default, aten._unsafe_view.default, aten.reshape.default}
# operations whose image-dependent inputs are read at positions outside the changed windows
_GATHERING = {aten.convolution.default, aten.max_pool2d_with_indices.default, aten.avg_pool2d.default,
              aten.mean.dim, aten.cat.default, aten.constant_pad_nd.default, aten.add.Tensor,
              aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor} | _VIEWS


def _where(node: torch.fx.Node) -> str:
    """The operation and the module it was traced from, for messages."""
    owner = node.meta.get("advrobust_module")
    if not owner:
        return f"{node.target}"
    where = f"module '{owner[0]}'" if owner[0] else "the model's own forward"
    return f"{node.target} in {where} ({owner[1]})"


def _trace(model: nn.Module, inputs: Sequence[Tensor]) -> torch.fx.GraphModule:
    """ATen-level graph of ``model(*inputs)``, each node's ``meta["advrobust_module"]`` naming the leaf
    module (name, class) it was traced in, for messages."""
    from torch.fx.experimental.proxy_tensor import get_proxy_mode, make_fx

    start: Dict[str, int] = {}

    def pre(name):
        def hook(module, args):
            start[name] = len(get_proxy_mode().tracer.graph.nodes)
        return hook

    def post(name):
        def hook(module, args, out):
            for n in list(get_proxy_mode().tracer.graph.nodes)[start[name]:]:
                n.meta.setdefault("advrobust_module", (name, type(module).__name__))
        return hook

    handles = []
    for name, module in model.named_modules():
        if not any(True for _ in module.children()):
            handles += [module.register_forward_pre_hook(pre(name)), module.register_forward_hook(post(name))]
    try:
        with torch.no_grad():
            return make_fx(lambda *a: model(*a))(*inputs)
    finally:
        for h in handles:
            h.remove()


def _out_window(H_in: int, H_out: int, h: int, K: int, s: int, p: int, d: int) -> int:
    """Fixed height of the output window of a convolution / pooling whose input window is h rows high,
    at any offset (the cone's height depends on the offset modulo the stride)."""
    best = 1
    for a in range(s):
        lo = -((-(a + p - d * (K - 1))) // s)
        hi = (a + h - 1 + p) // s
        best = max(best, hi - lo + 1)
    return min(best, H_out)


def _out_offset(a: Tensor, H_out: int, hout: int, K: int, s: int, p: int, d: int) -> Tensor:
    """Per-candidate first output row of the window (N,): the first output the input window reaches,
    moved inside the map."""
    lo = torch.div(a + p - d * (K - 1) + (s - 1), s, rounding_mode="floor")
    return lo.clamp(0, H_out - hout)


def _padded(base: Tensor, pad: float, margin: int, cache: Dict) -> Tuple[Tensor, int]:
    """``base`` (B, C, H, W) with at least ``margin`` rows/cols of ``pad`` around it, and the margin
    used (kept in ``cache``, the scorer's, per tensor and pad value)."""
    key = ("pad", id(base), pad)
    hit = cache.get(key)
    if hit is not None and hit[0] is base and hit[1] >= margin:
        return hit[2], hit[1]
    margin = -(-margin // 4) * 4  # a little slack so that the next call rarely needs a larger copy
    out = F.pad(base, (margin,) * 4, value=pad)
    cache[key] = (base, margin, out)
    return out, margin


def _gather(sp: _Spatial, img: Tensor, r0: Tensor, c0: Tensor, h: int, w: int, pad: float, cache: Dict,
            clean: Optional[Tensor] = None) -> Tensor:
    """(N, C, h, w): the candidates' activation at rows r0.. r0+h-1, cols c0.. c0+w-1 (``pad`` outside the
    map): the clean activation overwritten by the windows. ``clean`` overrides ``sp.clean``.

    The clean block is read through a sliding-window view of the map padded with ``pad``; each window
    is then pasted in, its positions outside the block sent to one spare element past the end."""
    base = sp.clean if clean is None else clean
    C, H, W = sp.shape
    dev = img.device
    N = img.numel()
    need = max(0, -int(r0.min()), -int(c0.min()), int(r0.max()) + h - H, int(c0.max()) + w - W) if N else 0
    base_p, m = _padded(base, pad, need, cache)
    sB, sC, sH, sW = base_p.stride()
    Hp, Wp = base_p.shape[-2:]
    blocks = base_p.as_strided((base_p.shape[0], C, Hp - h + 1, Wp - w + 1, h, w), (sB, sC, sH, sW, sH, sW))
    out = blocks[img, :, r0 + m, c0 + m]  # (N, C, h, w), a copy
    if not sp.wins:
        return out
    total = out.numel()
    flat = torch.cat([out.view(-1), out.new_zeros(1)])
    n_off = (torch.arange(N, device=dev) * (C * h * w))[:, None, None, None]
    c_off = (torch.arange(C, device=dev) * (h * w))[None, :, None, None]
    for win in sp.wins:
        hh, ww = win.vals.shape[-2:]
        rr = win.r0[:, None] + torch.arange(hh, device=dev) - r0[:, None]  # (N, hh) rows in the block
        cc = win.c0[:, None] + torch.arange(ww, device=dev) - c0[:, None]
        inside = ((rr >= 0) & (rr < h))[:, None, :, None] & ((cc >= 0) & (cc < w))[:, None, None, :]
        idx = n_off + c_off + (rr.clamp(0, h - 1) * w)[:, None, :, None] + cc.clamp(0, w - 1)[:, None, None, :]
        flat[torch.where(inside, idx, total).reshape(-1)] = win.vals.reshape(-1)
    return flat[:total].view(N, C, h, w)


def _deltas(sp: _Spatial, img: Tensor, cache: Dict) -> List[Tuple[_Win, Tensor]]:
    """Per window, (window, new - clean) with the positions already held by an earlier window zeroed,
    so that summing over the windows counts every changed position once."""
    C, H, W = sp.shape
    out = []
    for j, win in enumerate(sp.wins):
        h, w = win.vals.shape[-2:]
        clean = _gather(_Spatial(sp.clean, sp.shape, []), img, win.r0, win.c0, h, w, 0.0, cache)
        delta = win.vals - clean
        rows = win.r0[:, None] + torch.arange(h, device=img.device)
        cols = win.c0[:, None] + torch.arange(w, device=img.device)
        for prev in sp.wins[:j]:
            ph, pw = prev.vals.shape[-2:]
            rr, cc = rows - prev.r0[:, None], cols - prev.c0[:, None]
            seen = (((rr >= 0) & (rr < ph))[:, None, :, None]) & (((cc >= 0) & (cc < pw))[:, None, None, :])
            delta = delta.masked_fill(seen, 0)
        out.append((win, delta))
    return out


def _pair(v: Any) -> Tuple[int, int]:
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return (int(v[0]), int(v[-1]))


def _live_nodes(out_node: torch.fx.Node) -> set:
    """The nodes the output node depends on (itself included)."""
    live, stack = set(), [out_node]
    while stack:
        n = stack.pop()
        if n in live:
            continue
        live.add(n)
        stack.extend(n.all_input_nodes)
    return live


class IncrementalScorer:
    """Model outputs of k-pixel candidates of a clean batch, recomputing only each layer's cone.

    Args:
        model: the model (in eval mode: batch norm with running statistics), called as
            ``model(images, *extra)`` and returning one tensor ``(B, ...)``.
        x: ``(B, C, H, W)`` the clean images (floating point).
        extra: the model's other inputs ``(B, ...)`` (e.g. E(B-V)), never perturbed.
        chunk: candidates scored per internal chunk (bounds the windows' memory).

    Raises:
        Unsupported: the model cannot be traced, is in training mode, returns more than one tensor,
            or a layer the scheme does not support reads the changed pixels; the message names it.

    Attributes:
        bytes_per_image: bytes of clean activations kept per image (a property).
        cost_ratio: multiply-adds (and pooling reads) that the convolutions and pools do on the
            candidates' windows over those of the full layers, for one candidate (measured on the first
            scoring; None before): the share of the convolution work that incremental scoring keeps.
    """

    def __init__(self, model: nn.Module, x: Tensor, extra: Sequence[Tensor] = (), *, chunk: int = 4096) -> None:
        if model.training:
            raise Unsupported("the model is in training mode (batch statistics depend on the batch)")
        self.B = x.shape[0]
        self.image_shape = tuple(x.shape[1:])
        self.chunk = int(chunk)
        self.cost_ratio: Optional[float] = None
        self._costs = [0, 0]
        try:
            gm = _trace(model, (x, *extra))
        except Exception as err:  # noqa: BLE001 - any trace failure means: not supported
            raise Unsupported(f"the model could not be traced ({type(err).__name__}: {err})") from err
        self.gm = gm
        nodes = list(gm.graph.nodes)
        out_node = nodes[-1]
        if not isinstance(out_node.args[0], torch.fx.Node):
            raise Unsupported("the model returns more than one tensor")
        live = _live_nodes(out_node)
        self.nodes = [n for n in nodes if n in live and n.op != "output"]
        self.out_node = out_node.args[0]
        all_ph = [n for n in nodes if n.op == "placeholder"]
        self.image_node = all_ph[0]
        self.image_dep: Dict[torch.fx.Node, bool] = {}
        self.batched: Dict[torch.fx.Node, bool] = {}
        for n in self.nodes:
            ins = n.all_input_nodes
            self.image_dep[n] = n is self.image_node or any(self.image_dep[i] for i in ins)
            self.batched[n] = n.op == "placeholder" or any(self.batched[i] for i in ins)
        for n in self.nodes:
            if n.op == "call_function" and n.target in _BATCH_NORMS and n.target is aten.native_batch_norm.default \
                    and n.args[5]:
                raise Unsupported(f"{_where(n)} runs in training mode")
        self.clean = self._clean_pass(dict(zip(all_ph, (x, *extra))), live)
        self._cache: Dict[Any, Any] = {}

    @torch.no_grad()
    def _clean_pass(self, inputs: Dict[torch.fx.Node, Any], live: set) -> Dict[torch.fx.Node, Any]:
        """Run the graph on the clean batch (``inputs``: placeholder -> tensor) and keep what the
        candidates will need: every value not computed from the image, the image, the inputs of the
        matrix products and means, and the inputs of gathering ops; the rest is freed as soon as no
        later node reads it."""
        keep = {n for n in self.nodes if not self.image_dep[n] or n is self.image_node
                or n.target in (aten.addmm.default, aten.mm.default, aten.mean.dim)
                or any(u.target in _GATHERING for u in n.users)}
        env: Dict[torch.fx.Node, Any] = {}
        clean: Dict[torch.fx.Node, Any] = {}
        for n in self.nodes:
            if n.op == "placeholder":
                v = inputs[n]
            elif n.op == "get_attr":
                v = getattr(self.gm, n.target)
            else:
                args, kwargs = torch.fx.node.map_arg((n.args, n.kwargs), lambda a: env[a])
                v = n.target(*args, **kwargs)
            env[n] = v
            for i in n.all_input_nodes:  # free what no later node reads
                if all(u in env for u in i.users if u in live) and i not in keep:
                    env.pop(i, None)
            if n in keep:
                clean[n] = v
        return clean

    @property
    def bytes_per_image(self) -> int:
        """Bytes kept per clean image: the activations later layers read, and their padded copies
        (made on the first scoring)."""
        kept = sum(v.numel() * v.element_size() for n, v in self.clean.items()
                   if isinstance(v, Tensor) and self.image_dep[n])
        kept += sum(e[2].numel() * e[2].element_size() for k, e in self._cache.items() if k[0] == "pad")
        return kept // max(1, self.B)

    # ------------------------------------------------------------------ public
    def score(self, rows: Tensor, candidates: Tensor, *, add: bool = False, lo: Any = None,
              hi: Any = None) -> Tensor:
        """Model outputs ``(n * P, ...)`` of the candidates, image-major like the full forward of
        ``de_build`` images.

        Args:
            rows: ``(n,)`` int64, which of the clean images each block of candidates belongs to.
            candidates: ``(n, P, k, 2 + C)`` genes as :func:`advrobust.ops.de_build` takes them.
            add, lo, hi: as :class:`~advrobust.attacks.OnePixel`: add the values instead of replacing,
                and (with ``add``) clamp the changed pixels to ``[lo, hi]``.
        """
        n, P, k, G = candidates.shape
        img_all = rows.to(torch.int64).repeat_interleave(P)
        cand = candidates.reshape(n * P, k, G)
        outs = [self._score_chunk(img_all[a:a + self.chunk], cand[a:a + self.chunk], add, lo, hi)
                for a in range(0, n * P, self.chunk)]
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    # ------------------------------------------------------------------ one chunk
    def _pixels(self, img: Tensor, cand: Tensor, add: bool, lo: Any, hi: Any) -> _Spatial:
        """The input state: one 1x1 window per changed pixel, holding the pixel's final values."""
        x = self.clean[self.image_node]
        C, H, W = self.image_shape
        r, c = de_pixels(cand, H, W)  # (N, k)
        v = cand[..., 2:]  # (N, k, C)
        k = r.shape[1]
        cur = x[img[:, None], :, r, c]  # (N, k, C) clean values
        for j in range(k):  # pixels applied in order 0..k-1, as de_build
            same = ((r == r[:, j:j + 1]) & (c == c[:, j:j + 1]))[..., None]
            cur = torch.where(same, cur + v[:, j:j + 1] if add else v[:, j:j + 1].expand_as(cur), cur)
        if add and (lo is not None or hi is not None):
            cur = clamp_range(cur.transpose(1, 2), lo, hi).transpose(1, 2)
        wins = [_Win(r[:, j], c[:, j], cur[:, j, :, None, None]) for j in range(k)]
        return _Spatial(x, (C, H, W), wins)

    def _score_chunk(self, img: Tensor, cand: Tensor, add: bool, lo: Any, hi: Any) -> Tensor:
        env: Dict[torch.fx.Node, Any] = {}
        first = self.cost_ratio is None
        for n in self.nodes:
            if not self.image_dep[n]:
                env[n] = self.clean[n]
                continue
            if n is self.image_node:
                env[n] = self._pixels(img, cand, add, lo, hi)
                continue
            env[n] = self._step(n, env, img)
        if first and self._costs[1]:
            self.cost_ratio = self._costs[0] / self._costs[1]
        out = env[self.out_node]
        if not isinstance(out, _Dense):
            raise Unsupported(f"the model's output {_where(self.out_node)} is not a dense tensor")
        return out.value

    def _arg(self, a: Any, env: Dict, img: Tensor) -> Any:
        """A dense argument: candidates' values, or a clean per-image tensor indexed per candidate."""
        if isinstance(a, torch.fx.Node):
            v = env[a]
            if isinstance(v, _Dense):
                return v.value
            if isinstance(v, (_Spatial, _Flat)):
                raise Unsupported("dense")
            return v[img] if self.batched[a] and isinstance(v, Tensor) else v
        if isinstance(a, (list, tuple)):
            return type(a)(self._arg(b, env, img) for b in a)
        return a

    def _step(self, n: torch.fx.Node, env: Dict, img: Tensor) -> Any:
        t = n.target
        args = n.args
        states = [env[a] for a in n.all_input_nodes if self.image_dep[a]]
        if any(isinstance(s, _Dense) for s in states) or not states:
            return self._dense(n, env, img)
        a0 = env[args[0]] if isinstance(args[0], torch.fx.Node) else None
        if t is operator.getitem:
            if isinstance(a0, _Spatial) and args[1] == 0:
                return _Spatial(self.clean.get(n), a0.shape, a0.wins)
            raise Unsupported(f"{_where(n)} reads an output other than the first of {args[0].target}")
        if t in _POINTWISE and isinstance(a0, _Spatial) and not any(
                isinstance(env.get(a), (_Spatial, _Flat)) for a in n.all_input_nodes if a is not args[0]):
            return self._pointwise(n, a0, env, img)
        if isinstance(a0, _Spatial):
            if t is aten.convolution.default:
                return self._conv(n, a0, img)
            if t is aten.max_pool2d_with_indices.default:
                return self._maxpool(n, a0, img)
            if t is aten.avg_pool2d.default:
                return self._avgpool(n, a0, img)
            if t is aten.mean.dim:
                return self._mean(n, a0, img)
            if t is aten.constant_pad_nd.default:
                return self._pad(n, a0)
            if t in _VIEWS:
                return self._flatten(n, a0, args[0])
            if t in (aten.add.Tensor, aten.sub.Tensor) and isinstance(env.get(args[1]), _Spatial):
                return self._add(n, a0, env[args[1]], img)
        if t is aten.cat.default:
            return self._cat(n, env, img)
        if t in (aten.addmm.default, aten.mm.default):
            return self._linear(n, env, img)
        raise Unsupported(f"{_where(n)} is not supported on a changed region")

    # ------------------------------------------------------------------ handlers
    def _dense(self, n, env, img):
        if n.op != "call_function" or n.target not in _DENSE:
            raise Unsupported(f"{_where(n)} is not supported after the dense layer")
        try:
            args = self._arg(n.args, env, img)
            kwargs = self._arg(n.kwargs, env, img)
        except Unsupported:
            raise Unsupported(f"{_where(n)} mixes a changed region with dense candidates") from None
        if n.target in _VIEWS:
            shape = list(args[1])
            if shape[0] != self.B:
                raise Unsupported(f"{_where(n)} reshapes across the batch dimension")
            args = (args[0], [img.numel()] + shape[1:])
        v = n.target(*args, **kwargs)
        return _DenseTuple(v) if isinstance(v, (tuple, list)) else _Dense(v)

    def _pointwise(self, n, a0: _Spatial, env, img):
        rest_args = n.args[1:]
        if n.target not in _BATCH_NORMS and n.target is not aten._prelu_kernel.default:
            for a in n.all_input_nodes:  # per-channel parameters and scalars only: nothing position-dependent
                v = env[a] if a is not n.args[0] else None
                if isinstance(v, Tensor) and v.dim() > 0 and not (v.dim() >= 3 and tuple(v.shape[-2:]) == (1, 1)):
                    raise Unsupported(f"{_where(n)} combines a changed region with a position-dependent "
                                      f"tensor of shape {tuple(v.shape)}")
        wins = []
        for win in a0.wins:
            args = (win.vals,) + tuple(self._arg(a, env, img) for a in rest_args)
            kwargs = self._arg(n.kwargs, env, img)
            v = n.target(*args, **kwargs)
            wins.append(_Win(win.r0, win.c0, v[0] if n.target in _BATCH_NORMS else v))
        return _Spatial(self.clean.get(n), a0.shape, wins)

    def _geometry(self, n, a0: _Spatial, K, s, p, d, out_hw, macs: int):
        """Per window: output window size and offsets, and the input patch it needs."""
        C, H, W = a0.shape
        Ho, Wo = out_hw
        plan = []
        for j, win in enumerate(a0.wins):
            h, w = win.vals.shape[-2:]
            ho = _out_window(H, Ho, h, K[0], s[0], p[0], d[0])
            wo = _out_window(W, Wo, w, K[1], s[1], p[1], d[1])
            o_r = _out_offset(win.r0, Ho, ho, K[0], s[0], p[0], d[0])
            o_c = _out_offset(win.c0, Wo, wo, K[1], s[1], p[1], d[1])
            hin, win_w = (ho - 1) * s[0] + d[0] * (K[0] - 1) + 1, (wo - 1) * s[1] + d[1] * (K[1] - 1) + 1
            plan.append((o_r, o_c, ho, wo, o_r * s[0] - p[0], o_c * s[1] - p[1], hin, win_w))
            if self.cost_ratio is None:
                self._costs[0] += ho * wo * macs
                self._costs[1] += Ho * Wo * macs if j == 0 else 0
        return plan

    def _conv(self, n, a0, img):
        x, w, b, stride, padding, dilation, transposed, _, groups = n.args
        if transposed:
            raise Unsupported(f"{_where(n)} is a transposed convolution")
        weight = self.clean[w]
        bias = self.clean[b] if b is not None else None
        out = self.clean.get(n)
        Ho, Wo = self._out_hw(n)
        K = tuple(weight.shape[-2:])
        s, p, d = _pair(stride), _pair(padding), _pair(dilation)
        wins = []
        for o_r, o_c, ho, wo, i_r, i_c, hin, win_w in self._geometry(n, a0, K, s, p, d, (Ho, Wo),
                                                                         weight[0].numel() * weight.shape[0]):
            patch = _gather(a0, img, i_r, i_c, hin, win_w, 0.0, self._cache)
            v = aten.convolution.default(patch, weight, bias, list(s), [0, 0], list(d), False, [0, 0], groups)
            wins.append(_Win(o_r, o_c, v))
        return _Spatial(out, (weight.shape[0], Ho, Wo), wins)

    def _out_hw(self, n) -> Tuple[int, int]:
        val = n.meta.get("val")
        if isinstance(val, (tuple, list)):
            val = val[0]
        if val is None:
            raise Unsupported(f"{_where(n)}: the trace recorded no output shape")
        return int(val.shape[-2]), int(val.shape[-1])

    def _maxpool(self, n, a0, img):
        args = list(n.args) + [None] * (6 - len(n.args))
        _, kernel, stride, padding, dilation, ceil_mode = args[:6]
        K = _pair(kernel)
        s = _pair(stride) if stride else K
        p = _pair(padding if padding is not None else 0)
        d = _pair(dilation if dilation is not None else 1)
        Ho, Wo = self._out_hw(n)
        wins = []
        for o_r, o_c, ho, wo, i_r, i_c, hin, win_w in self._geometry(n, a0, K, s, p, d, (Ho, Wo),
                                                                         a0.shape[0] * K[0] * K[1]):
            patch = _gather(a0, img, i_r, i_c, hin, win_w, float("-inf"), self._cache)
            wins.append(_Win(o_r, o_c, F.max_pool2d(patch, K, s, 0, d)))
        return _Spatial(None, (a0.shape[0], Ho, Wo), wins)

    def _avgpool(self, n, a0, img):
        args = list(n.args) + [None] * (7 - len(n.args))
        _, kernel, stride, padding, ceil_mode, count_include_pad, divisor = args[:7]
        K = _pair(kernel)
        s = _pair(stride) if stride else K
        p = _pair(padding if padding is not None else 0)
        Ho, Wo = self._out_hw(n)
        key = ("avg", n)
        if key not in self._cache:  # 1 / divisor of every output position
            C, H, W = a0.shape
            ones = torch.ones((1, 1, H, W), dtype=self.clean[self.image_node].dtype, device=img.device)
            kw = dict(ceil_mode=bool(ceil_mode), count_include_pad=True if count_include_pad is None else
                      bool(count_include_pad))
            avg = F.avg_pool2d(ones, K, s, p, divisor_override=divisor, **kw)
            count = F.avg_pool2d(ones, K, s, p, divisor_override=1, **kw)
            self._cache[key] = (avg / count)[0, 0]
        scale = self._cache[key]
        wins = []
        for o_r, o_c, ho, wo, i_r, i_c, hin, win_w in self._geometry(n, a0, K, s, p, (1, 1), (Ho, Wo),
                                                                         a0.shape[0] * K[0] * K[1]):
            patch = _gather(a0, img, i_r, i_c, hin, win_w, 0.0, self._cache)
            total = F.avg_pool2d(patch, K, s, 0, divisor_override=1)
            rr = o_r[:, None] + torch.arange(ho, device=img.device)
            cc = o_c[:, None] + torch.arange(wo, device=img.device)
            wins.append(_Win(o_r, o_c, total * scale[rr[:, :, None], cc[:, None, :]][:, None]))
        return _Spatial(self.clean.get(n), (a0.shape[0], Ho, Wo), wins)

    def _pad(self, n, a0):
        pad = list(n.args[1])
        value = n.args[2] if len(n.args) > 2 else 0
        if len(pad) != 4 or min(pad) < 0:
            raise Unsupported(f"{_where(n)} pads other than the two spatial dimensions (pad {pad})")
        left, right, top, bottom = pad
        C, H, W = a0.shape
        del value  # the padded border never changes: it lies outside every window
        wins = [_Win(w.r0 + top, w.c0 + left, w.vals) for w in a0.wins]
        return _Spatial(self.clean.get(n), (C, H + top + bottom, W + left + right), wins)

    def _add(self, n, a: _Spatial, b: _Spatial, img):
        """a + alpha * b (or a - alpha * b) on the bounding box of the two inputs' windows, per pixel."""
        alpha = n.kwargs.get("alpha", 1) if len(n.args) < 3 else n.args[2]
        if a.shape != b.shape:
            raise Unsupported(f"{_where(n)} broadcasts two changed maps")
        C, H, W = a.shape
        wins = []
        for wa, wb in zip(a.wins, b.wins):
            r0, c0, h, w = _bbox([wa, wb], H, W)
            va = _gather(a, img, r0, c0, h, w, 0.0, self._cache)
            vb = _gather(b, img, r0, c0, h, w, 0.0, self._cache)
            v = n.target(va, vb, alpha=alpha)
            wins.append(_Win(r0, c0, v))
        return _Spatial(self.clean.get(n), a.shape, wins)

    def _mean(self, n, a0, img):
        dims = sorted(int(d) % 4 for d in n.args[1])
        keepdim = bool(n.args[2]) if len(n.args) > 2 else bool(n.kwargs.get("keepdim", False))
        if dims != [2, 3] or n.kwargs.get("dtype") is not None:
            raise Unsupported(f"{_where(n)} averages over dimensions {n.args[1]} (only (2, 3) is supported)")
        C, H, W = a0.shape
        total = sum(delta.sum(dim=(2, 3)) for _, delta in _deltas(a0, img, self._cache))
        v = self.clean[n][img].reshape(img.numel(), C) + total / (H * W)
        return _Dense(v.view(img.numel(), C, 1, 1) if keepdim else v)

    def _flatten(self, n, a0, src):
        shape = list(n.args[1])
        C, H, W = a0.shape
        if len(shape) != 2 or shape[0] != self.B or shape[1] not in (-1, C * H * W):
            raise Unsupported(f"{_where(n)} reshapes a changed map to {shape} (only flatten(1) is supported)")
        return _Flat(a0, self.clean[src], 0)

    def _cat(self, n, env, img):
        tensors = n.args[0]
        dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)
        states = [env[a] for a in tensors]
        flats = [s for s in states if isinstance(s, _Flat)]
        spat = [s for s in states if isinstance(s, _Spatial)]
        if flats and not spat and len(flats) == 1 and dim in (1, -1):
            start = 0
            for a, s in zip(tensors, states):
                if isinstance(s, _Flat):
                    return _Flat(s.src, s.src_clean, s.start + start)
                start += int(s.shape[1]) if isinstance(s, Tensor) else 0
        if spat and not flats and int(dim) % 4 == 1:
            return self._cat_channels(n, tensors, states, img)
        raise Unsupported(f"{_where(n)} concatenates changed inputs in a way not supported")

    def _cat_channels(self, n, tensors, states, img):
        """Channel concatenation: per pixel, every input read on the bounding box of their windows."""
        shapes = {s.shape[1:] for s in states if isinstance(s, _Spatial)}
        if len(shapes) != 1:
            raise Unsupported(f"{_where(n)} concatenates maps of different sizes")
        H, W = shapes.pop()
        sp = [s for s in states if isinstance(s, _Spatial)]
        k = len(sp[0].wins)
        wins = []
        for j in range(k):
            r0, c0, h, w = _bbox([s.wins[j] for s in sp], H, W)
            parts = []
            for a, s in zip(tensors, states):
                if isinstance(s, _Spatial):
                    parts.append(_gather(s, img, r0, c0, h, w, 0.0, self._cache))
                else:  # a per-image map that does not depend on the pixels
                    parts.append(_gather(_Spatial(s, tuple(s.shape[1:]), []), img, r0, c0, h, w, 0.0, self._cache))
            wins.append(_Win(r0, c0, torch.cat(parts, dim=1)))
        C = sum(int(s.shape[0]) if isinstance(s, _Spatial) else int(s.shape[1]) for s in states)
        return _Spatial(self.clean.get(n), (C, H, W), wins)

    def _linear(self, n, env, img):
        if n.target is aten.addmm.default:
            _, x, wt = n.args[:3]
            if n.kwargs.get("beta", 1) != 1 or n.kwargs.get("alpha", 1) != 1:
                raise Unsupported(f"{_where(n)} has beta/alpha")
        else:
            x, wt = n.args[:2]
        flat = env[x]
        if not isinstance(flat, _Flat) or self.image_dep[wt]:
            raise Unsupported(f"{_where(n)} multiplies a changed region in a way not supported")
        sp = flat.src
        sp = _Spatial(flat.src_clean, sp.shape, sp.wins)
        C, H, W = sp.shape
        key = ("wt", n)
        if key not in self._cache:
            self._cache[key] = self.clean[wt][flat.start:flat.start + C * H * W].contiguous()
        weight = self._cache[key]
        N = img.numel()
        cols, vals = [], []
        for win, delta in _deltas(sp, img, self._cache):
            h, w = delta.shape[-2:]
            rows = win.r0[:, None] + torch.arange(h, device=img.device)
            cc = win.c0[:, None] + torch.arange(w, device=img.device)
            idx = (torch.arange(C, device=img.device)[None, :, None, None] * (H * W)
                   + rows[:, None, :, None] * W + cc[:, None, None, :])
            cols.append(idx.reshape(N, -1))
            vals.append(delta.reshape(N, -1))
        cols_t, vals_t = torch.cat(cols, dim=1), torch.cat(vals, dim=1)
        m = cols_t.shape[1]
        crow = torch.arange(0, N * m + 1, m, device=img.device)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            sparse = torch.sparse_csr_tensor(crow, cols_t.reshape(-1), vals_t.reshape(-1), size=(N, C * H * W),
                                             check_invariants=False)
            change = torch.sparse.mm(sparse, weight)
        return _Dense(self.clean[n][img] + change)


class _DenseTuple(_Dense):
    """A dense operation's tuple output (batch norm), read by getitem."""


def _bbox(wins: Sequence[_Win], H: int, W: int) -> Tuple[Tensor, Tensor, int, int]:
    """Per candidate, a fixed-size box inside the H x W map holding every window of ``wins``."""
    r_lo = torch.stack([w.r0 for w in wins]).amin(0)
    c_lo = torch.stack([w.c0 for w in wins]).amin(0)
    r_hi = torch.stack([w.r0 + w.vals.shape[-2] for w in wins]).amax(0)
    c_hi = torch.stack([w.c0 + w.vals.shape[-1] for w in wins]).amax(0)
    h = min(H, int((r_hi - r_lo).max())) if r_lo.numel() else 1
    w = min(W, int((c_hi - c_lo).max())) if c_lo.numel() else 1
    return r_lo.clamp(0, H - h), c_lo.clamp(0, W - w), h, w
