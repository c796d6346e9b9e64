"""Many one-hidden-layer MLPs trained at once, each with exactly its own arithmetic.

The tutorial's grid is 45 fits of tiny networks (784 -> h -> 10). One at a time, each step
is a small matmul plus Python overhead, and 45 x 15 epochs take many minutes on two cores.
Here the models are stacked so that one step of every model is a few batched matmuls:

* a *group* is one (data stream, learning rate) pair, e.g. (fold 2, lr 0.002); the
  groups of one stream see the same batches;
* inside a group, the hidden layers of all widths sit side by side in one wide layer
  (``H = sum(widths)`` units) and the output layer is block-diagonal (each model's 10
  logits read only its own hidden units), so the models never mix: each model's loss
  depends only on its own parameters and the summed loss gives each its own gradient.

Gradients are written out by hand (two layers, softmax cross-entropy) to skip autograd's
bookkeeping, and Keras' RMSprop (``v = rho*v + (1-rho)*g^2; w -= lr*g/(sqrt(v)+eps)``)
runs as one fused pass over memory (see ``_rmsprop_step``).

Two optional savings keep the arithmetic of each model: pixels that are blank in every row
the stack sees are left out of the first layer (their weights would get zero gradients and
never move), and ``precision="bf16"`` runs the two big matmuls of the first layer in bf16
(AMX on recent CPUs) while weights, gradients and RMSprop stay fp32, as mixed-precision
training does everywhere.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from digits.models.layers import Classifier
from digits.models.registry import create_model
from digits.train.denormals import flushed_denormals
from digits.train.history import History

RHO = 0.9      # Keras RMSprop defaults
EPS = 1e-7
_PIXEL_SCALE = 1.0 / 255.0  # as Classifier: pixels 0-255 -> [0, 1]


def resolve_precision(precision: str) -> str:
    """``fp32`` or ``bf16`` as given; ``auto`` asks the hardware rule (bf16 where the CPU computes
    it natively, fp32 where it is emulated). The stack computes on the CPU, in fp32 or bf16 only."""
    from digits.hardware import choose_precision, hardware

    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, not {precision!r}")
    return choose_precision(precision, hardware("cpu"))


def _linears(model: Classifier) -> tuple[nn.Linear, nn.Linear]:
    layers = [m for m in model.net.modules() if isinstance(m, nn.Linear)]
    if len(layers) != 2 or layers[0].in_features != 784 or layers[1].out_features != 10:
        raise ValueError("expected a 784 -> h -> 10 MLP (tutorial-mlp)")
    return layers[0], layers[1]


class MlpStack:
    """G groups x M widths of 784 -> h -> 10 MLPs, trained together.

    Shapes: ``w1`` (G, 784, H), ``b1`` (G, 1, H), ``w2`` (G, H, 10M) block-diagonal,
    ``b2`` (G, 1, 10M), where H = sum(widths); model m of a group owns hidden units
    ``offsets[m]:offsets[m+1]`` and logits ``10m:10m+10``.
    """

    def __init__(self, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor,
                 widths: Sequence[int], lrs: Sequence[float], precision: str = "fp32") -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, not {precision!r}")
        self.precision = precision
        self.widths = tuple(int(w) for w in widths)
        self.lrs = tuple(float(lr) for lr in lrs)
        self.offsets = np.concatenate([[0], np.cumsum(self.widths)]).tolist()
        self.w1, self.b1, self.w2, self.b2 = w1, b1, w2, b2
        g, h, m = len(self.lrs), self.offsets[-1], len(self.widths)
        self.block = torch.zeros(1, h, 10 * m)  # 1 where a weight of w2 belongs to a model
        for i in range(m):
            self.block[0, self.offsets[i]:self.offsets[i + 1], 10 * i:10 * i + 10] = 1.0
        self.params = (self.w1, self.b1, self.w2, self.b2)
        self.grads = tuple(torch.zeros_like(p) for p in self.params)
        self.square_avg = tuple(torch.zeros_like(p) for p in self.params)  # RMSprop's v
        self._scratch: dict[str, torch.Tensor] = {}
        assert self.w1.shape == (g, 784, h) and self.w2.shape == (g, h, 10 * m)

    @property
    def groups(self) -> int:
        return len(self.lrs)

    @classmethod
    def from_models(cls, models: Sequence[Sequence[Classifier]], lrs: Sequence[float],
                    precision: str = "fp32") -> MlpStack:
        """Pack ``models[g][m]`` (group g, width index m; every group the same widths)."""
        widths = [_linears(m)[0].out_features for m in models[0]]
        g, h, k = len(models), sum(widths), len(widths)
        w1, b1 = torch.zeros(g, 784, h), torch.zeros(g, 1, h)
        w2, b2 = torch.zeros(g, h, 10 * k), torch.zeros(g, 1, 10 * k)
        with torch.no_grad():
            for gi, row in enumerate(models):
                start = 0
                for mi, model in enumerate(row):
                    first, second = _linears(model)
                    end = start + first.out_features
                    w1[gi, :, start:end] = first.weight.T  # nn.Linear stores (out, in)
                    b1[gi, 0, start:end] = first.bias
                    w2[gi, start:end, 10 * mi:10 * mi + 10] = second.weight.T
                    b2[gi, 0, 10 * mi:10 * mi + 10] = second.bias
                    start = end
        return cls(w1, b1, w2, b2, widths, lrs, precision)

    def to_model(self, group: int, index: int) -> Classifier:
        """Unpack one model as an ordinary ``tutorial-mlp`` Classifier."""
        model = create_model("tutorial-mlp", hidden=self.widths[index])
        first, second = _linears(model)
        a, b = self.offsets[index], self.offsets[index + 1]
        with torch.no_grad():
            first.weight.copy_(self.w1[group, :, a:b].T)
            first.bias.copy_(self.b1[group, 0, a:b])
            second.weight.copy_(self.w2[group, a:b, 10 * index:10 * index + 10].T)
            second.bias.copy_(self.b2[group, 0, 10 * index:10 * index + 10])
        return model

    @contextmanager
    def only_pixels(self, pixels: torch.Tensor) -> Iterator[None]:
        """Within the block the first layer reads only ``pixels`` (indices into the 784), so
        inputs are (G, N, len(pixels)); the other rows of ``w1`` are put back unchanged after.
        Meant for pixels that are zero in every row trained or evaluated on: their rows would
        get zero gradients (and RMSprop averages) anyway."""
        full = (self.w1, self.grads[0], self.square_avg[0])
        self.w1, g1, v1 = (t[:, pixels].contiguous() for t in full)
        self.grads, self.square_avg = (g1, *self.grads[1:]), (v1, *self.square_avg[1:])
        self.params = (self.w1, *self.params[1:])
        try:
            yield
        finally:
            for whole, part in zip(full, (self.w1, self.grads[0], self.square_avg[0])):
                whole[:, pixels] = part
            self.w1 = full[0]
            self.grads, self.square_avg = (full[1], *self.grads[1:]), (full[2], *self.square_avg[1:])
            self.params = (self.w1, *self.params[1:])

    def _buffer(self, name: str, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """A scratch tensor kept between steps: a fresh 10 MB one per step costs page faults."""
        buffer = self._scratch.get(name)
        if buffer is None or buffer.shape != like.shape or buffer.dtype != dtype:
            buffer = self._scratch[name] = torch.empty(like.shape, dtype=dtype)
        return buffer

    def inputs(self, pixels: torch.Tensor, precision: str | None = None) -> torch.Tensor:
        """uint8 pixels -> what the first layer multiplies: fp32 pixels / 255 as ``Classifier``
        scales them, or in bf16 the values 0-255 themselves (exact there; the 1/255 is then
        applied to the products)."""
        if (precision or self.precision) == "bf16":
            return pixels.to(torch.bfloat16)
        return pixels.to(torch.float32).mul_(_PIXEL_SCALE)

    def _first_layer(self, x: torch.Tensor) -> torch.Tensor:
        """(G, N, P) ``inputs`` -> (G, N, H) fp32 pre-activations (a bf16 matmul for bf16 inputs)."""
        if x.dtype == torch.bfloat16:
            w1 = self._buffer("w1", self.w1, x.dtype).copy_(self.w1)
            return torch.baddbmm(self.b1.to(x.dtype), x, w1, alpha=_PIXEL_SCALE).float()
        return torch.baddbmm(self.b1, x, self.w1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(G, N, P) ``inputs`` -> (G, N, M, 10) logits of every model."""
        a = torch.relu(self._first_layer(x))  # (G, N, H)
        z2 = torch.baddbmm(self.b2, a, self.w2)  # (G, N, 10M); off-block weights are zero
        return z2.view(x.shape[0], x.shape[1], len(self.widths), 10)

    def train_step(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor,
                   active: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One RMSprop step of every model on its group's batch.

        ``x`` (G, B, P) ``inputs`` (P = 784, fewer within ``only_pixels``), ``y`` (G, B) labels,
        ``weight`` (G, B): 1/n for the n real rows of a group's batch, 0 for padding. Groups
        not in ``active`` (an empty batch) are left untouched. Returns the summed loss and the
        number of correct predictions over the real rows, both (G, M).
        """
        g, b = y.shape
        m = len(self.widths)
        z1 = self._first_layer(x)  # (G, B, H)
        a = torch.relu(z1)
        logp = torch.log_softmax(torch.baddbmm(self.b2, a, self.w2).view(g, b, m, 10), dim=-1)
        target = y[:, :, None, None].expand(g, b, m, 1)
        nll = -logp.gather(-1, target).squeeze(-1)  # (G, B, M)
        real = (weight > 0).to(x.dtype)[:, :, None]
        loss_sum = (nll * real).sum(1)
        correct = ((logp.argmax(-1) == y[:, :, None]).to(x.dtype) * real).sum(1)
        # d(mean cross-entropy)/d(logits) = (softmax - onehot) / n, per model.
        dz2 = logp.exp_().scatter_add_(-1, target, torch.full_like(nll, -1.0).unsqueeze(-1))
        dz2 = dz2.mul_(weight[:, :, None, None]).view(g, b, 10 * m)
        gw1, gb1, gw2, gb2 = self.grads
        torch.bmm(a.transpose(1, 2), dz2, out=gw2).mul_(self.block)  # only each model's own block
        torch.sum(dz2, dim=1, keepdim=True, out=gb2)
        dz1 = torch.bmm(dz2, self.w2.transpose(1, 2)).mul_(z1 > 0)  # back through ReLU
        if x.dtype == torch.bfloat16:
            half = self._buffer("gw1", gw1, x.dtype)
            gw1.copy_(half.baddbmm_(x.transpose(1, 2), dz1.to(x.dtype), beta=0, alpha=_PIXEL_SCALE))
        else:
            torch.bmm(x.transpose(1, 2), dz1, out=gw1)
        torch.sum(dz1, dim=1, keepdim=True, out=gb1)
        self._rmsprop_step(range(g) if active is None else active)
        return loss_sum, correct

    def _rmsprop_step(self, active: Sequence[int]) -> None:
        by_lr: dict[float, list[int]] = {}
        for gi in active:
            by_lr.setdefault(self.lrs[gi], []).append(gi)
        for lr, groups in by_lr.items():
            # The gradient buffers double as Adam's first moment (see rmsprop_update).
            lists = [[t[gi] for gi in groups for t in tensors]
                     for tensors in (self.params, self.grads, self.grads, self.square_avg)]
            rmsprop_update(*lists, lr=lr)


_STEP_WITHOUT_BIAS_CORRECTION = 1e6  # 1 - 0.9**1e6 == 1.0 exactly in double precision


def rmsprop_update(params: list[torch.Tensor], grads: list[torch.Tensor], scratch: list[torch.Tensor],
                   square_avg: list[torch.Tensor], lr: float, rho: float = RHO, eps: float = EPS) -> None:
    """Keras RMSprop on every tensor, in place: ``v = rho*v + (1-rho)*g^2; w -= lr*g/(sqrt(v)+eps)``.

    Why Adam: PyTorch has a fused CPU kernel for Adam and none for RMSprop, and the update is
    memory-bound: one pass over tens of megabytes instead of six.
    Adam with beta1 = 0 keeps its first moment equal to g, and at a step count this large
    its bias corrections are exactly 1, which leaves exactly the RMSprop update above.
    ``scratch`` holds Adam's first moment, which equals the gradient: passing the gradient
    tensors themselves (elementwise, so aliasing is safe) saves one pass over memory.
    """
    fused = getattr(torch, "_fused_adam_", None)
    if fused is not None and params and params[0].device.type in ("cpu", "cuda"):
        steps = [torch.tensor(_STEP_WITHOUT_BIAS_CORRECTION) for _ in params]
        try:
            fused(params, grads, scratch, square_avg, [], steps, lr=lr, beta1=0.0, beta2=rho,
                  weight_decay=0.0, eps=eps, amsgrad=False, maximize=False)
            return
        except (RuntimeError, NotImplementedError):
            pass  # older torch without a CPU kernel: the plain update below
    for p, g, v in zip(params, grads, square_avg):
        v.mul_(rho).addcmul_(g, g, value=1 - rho)
        p.addcdiv_(g, v.sqrt().add_(eps), value=-lr)


@dataclass(frozen=True)
class Stream:
    """One data stream: training rows (and optional validation rows) of a uint8 image tensor."""

    train: torch.Tensor  # int64 row indices into the images
    val: torch.Tensor | None = None


EpochHook = Callable[[int, float], None]


def train_stack(stack: MlpStack, images: torch.Tensor, labels: torch.Tensor, streams: Sequence[Stream],
                group_stream: Sequence[int], epochs: int, batch_size: int, seed: int = 0,
                on_epoch: EpochHook | None = None) -> list[list[History]]:
    """Train every model of ``stack`` for ``epochs``; group g reads ``streams[group_stream[g]]``.

    ``images`` uint8 (N, 28, 28) and ``labels`` (N,) are shared by all streams. Each stream
    reshuffles its rows every epoch (its own generator, seeded from ``seed``); batches are
    ``batch_size`` rows, the last one shorter, as Keras does. Returns ``histories[g][m]``.
    With a bf16 stack, every epoch's validation but the last runs in bf16 too; the last one,
    which a grid's table reports, in fp32.
    """
    flat = images.reshape(len(images), 784)
    seen = torch.cat([s.train for s in streams] + [s.val for s in streams if s.val is not None])
    pixels = (flat[seen].amax(0) > 0).nonzero().squeeze(1)  # blank everywhere: MNIST has ~76
    # Denormals: see digits.train.denormals (the CLI flushes them on every thread).
    with stack.only_pixels(pixels), flushed_denormals():
        return _train_stack(stack, flat[:, pixels].contiguous(), labels, streams, group_stream, epochs,
                            batch_size, seed, on_epoch)


def _train_stack(stack: MlpStack, flat: torch.Tensor, labels: torch.Tensor, streams: Sequence[Stream],
                 group_stream: Sequence[int], epochs: int, batch_size: int, seed: int,
                 on_epoch: EpochHook | None) -> list[list[History]]:
    inputs = stack.inputs(flat)  # converted once, not per batch
    group_stream_t = torch.as_tensor(list(group_stream))
    gens = [torch.Generator().manual_seed(seed * 1000 + s) for s in range(len(streams))]
    steps = max(math.ceil(len(s.train) / batch_size) for s in streams)
    histories = [[History() for _ in stack.widths] for _ in range(stack.groups)]
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        orders = [s.train[torch.randperm(len(s.train), generator=gen)] for s, gen in zip(streams, gens)]
        loss_sum = torch.zeros(stack.groups, len(stack.widths))
        correct = torch.zeros_like(loss_sum)
        for step in range(steps):
            idx, weight, active = _batch(orders, step, batch_size, group_stream)
            x = inputs[idx][group_stream_t]  # (G, B, P)
            y = labels[idx][group_stream_t]
            ls, cs = stack.train_step(x, y, weight[group_stream_t], active)
            loss_sum += ls
            correct += cs
        seconds = time.perf_counter() - started
        counts = torch.tensor([float(len(streams[s].train)) for s in group_stream])[:, None]
        val = evaluate_stack(stack, flat, labels, streams, group_stream,
                             precision="fp32" if epoch == epochs else stack.precision)
        for gi in range(stack.groups):
            for mi in range(len(stack.widths)):
                vl, va = (val[0][gi, mi].item(), val[1][gi, mi].item()) if val else (math.nan, math.nan)
                histories[gi][mi].append({
                    "epoch": epoch, "loss": (loss_sum[gi, mi] / counts[gi, 0]).item(),
                    "accuracy": (correct[gi, mi] / counts[gi, 0]).item(), "val_loss": vl,
                    "val_accuracy": va, "lr": stack.lrs[gi], "seconds": seconds})
        if on_epoch is not None:
            on_epoch(epoch, seconds)
    return histories


def _batch(orders: Sequence[torch.Tensor], step: int, batch_size: int,
           group_stream: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Row indices (S, B) padded with row 0, weights (S, B) = 1/n or 0, and the active groups."""
    idx = torch.zeros(len(orders), batch_size, dtype=torch.int64)
    weight = torch.zeros(len(orders), batch_size)
    for s, order in enumerate(orders):
        rows = order[step * batch_size:(step + 1) * batch_size]
        idx[s, :len(rows)] = rows
        if len(rows):
            weight[s, :len(rows)] = 1.0 / len(rows)
    active = [g for g, s in enumerate(group_stream) if weight[s, 0] > 0]
    return idx, weight, active


@torch.no_grad()
def evaluate_stack(stack: MlpStack, flat: torch.Tensor, labels: torch.Tensor, streams: Sequence[Stream],
                   group_stream: Sequence[int], chunk: int = 2048,
                   precision: str | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(mean cross-entropy, accuracy), each (G, M), on every group's validation rows; None if none.
    ``flat`` (N, P) uint8 holds the pixels the first layer reads; ``precision`` overrides the stack's."""
    if any(s.val is None or not len(s.val) for s in streams):
        return None
    g, m = stack.groups, len(stack.widths)
    loss, correct = torch.zeros(g, m), torch.zeros(g, m)
    longest = max(len(s.val) for s in streams)
    for start in range(0, longest, chunk):
        parts = [s.val[start:start + chunk] for s in streams]
        n = max(len(p) for p in parts)
        idx = torch.zeros(len(parts), n, dtype=torch.int64)
        real = torch.zeros(len(parts), n)
        for s, p in enumerate(parts):
            idx[s, :len(p)], real[s, :len(p)] = p, 1.0
        gs = torch.as_tensor(list(group_stream))
        x = stack.inputs(flat[idx], precision)[gs]
        y = labels[idx][gs]
        logp = torch.log_softmax(stack.logits(x), dim=-1)  # (G, n, M, 10)
        nll = -logp.gather(-1, y[:, :, None, None].expand(g, n, m, 1)).squeeze(-1)
        mask = real[gs][:, :, None]
        loss += (nll * mask).sum(1)
        correct += ((logp.argmax(-1) == y[:, :, None]).to(torch.float32) * mask).sum(1)
    sizes = torch.tensor([float(len(streams[s].val)) for s in group_stream])[:, None]
    return loss / sizes, correct / sizes
