"""A hand-fused training step for plain MLPs on the CPU: the same mathematics, less overhead.

The tutorial's network is tiny (25,450 parameters), so the ordinary loop spends almost all
of its time in per-step overhead: autograd bookkeeping, the optimizer object, ``zero_grad``,
a dozen small allocations. For a ``Classifier`` whose net is ``Flatten, (Linear, ReLU)*,
Linear`` this module writes the forward and backward pass out by hand (``addmm``/``mm`` on
preallocated buffers, no autograd) and applies RMSprop, Adam or SGD with the very same
in-place tensor operations as ``torch.optim``'s single-tensor code, on one flat buffer that
holds every parameter, so one update is five kernel calls whatever the depth.

Same model, optimizer, batch size, batch order (the same seeded ``randperm``) and loss:
``tests/test_fast_mlp.py`` checks that the weights after N steps match the autograd +
``torch.optim`` loop within float tolerance. ``fit`` takes this path by itself when
``can_fit_fast`` says it can, and falls back to the general loop otherwise.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from digits.data.dataset import DigitSet
from digits.models.layers import Classifier
from digits.train.callbacks import Callback
from digits.train.config import TrainConfig
from digits.train.fit import TensorSet, evaluate
from digits.train.history import History

# TrainConfig fields this path honours. Any other field (schedules, augmentation,
# checkpoints, ... added later) must keep its default, or fit() takes the general loop.
HANDLED_FIELDS = frozenset({"model", "model_args", "epochs", "batch_size", "optimizer", "lr",
                            "optimizer_args", "val_split", "shuffle", "seed", "device"})
# Optimizer arguments (build_optimizer's names) the hand-written updates implement.
OPTIMIZER_ARGS = {"rmsprop": {"rho", "eps"}, "adam": {"betas", "eps"}, "sgd": {"momentum", "nesterov"}}
PROGRESS_UPDATES = 50  # on_batch_end calls per epoch: enough for a smooth bar, cheap next to 650 steps
SMALL_MODEL = 200_000  # parameters; below this one thread beats two (thread wake-up > matmul time)


def mlp_layers(model: nn.Module) -> list[nn.Linear] | None:
    """The Linear layers of a ``Classifier(Flatten, (Linear, ReLU)*, Linear)``, else None."""
    if not isinstance(model, Classifier) or not isinstance(model.net, nn.Sequential):
        return None
    modules = list(model.net)
    if len(modules) < 2 or not isinstance(modules[0], nn.Flatten) or len(modules) % 2:
        return None
    linears = modules[1::2]
    relus = modules[2::2]
    if not all(type(m) is nn.Linear and m.bias is not None for m in linears):
        return None
    if not all(type(m) is nn.ReLU for m in relus):
        return None
    if linears[0].in_features != 784 or any(a.out_features != b.in_features
                                            for a, b in zip(linears, linears[1:])):
        return None
    params = [p for layer in linears for p in (layer.weight, layer.bias)]
    if any(p.dtype != torch.float32 or not p.requires_grad for p in params):
        return None
    return linears


def is_small_mlp(model: nn.Module) -> bool:
    """A plain MLP so small that one CPU thread runs it faster than several: its matmuls
    take microseconds, less than waking (or, on a busy machine, waiting for) a second thread."""
    layers = mlp_layers(model)
    return layers is not None and sum(p.numel() for l in layers for p in l.parameters()) < SMALL_MODEL


@contextmanager
def use_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` intra-op threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def can_fit_fast(model: nn.Module, config: TrainConfig, callbacks: Sequence[Callback] = (),
                 device: torch.device | None = None) -> bool:
    """Whether ``fit_fast`` computes exactly what the general loop would for this run."""
    if device is not None and device.type != "cpu":
        return False  # on a GPU the per-step overhead is the GPU engineer's problem, not this one
    if any(getattr(config, f.name) != _default(f) for f in dataclasses.fields(config)
           if f.name not in HANDLED_FIELDS):
        return False
    allowed = OPTIMIZER_ARGS.get(config.optimizer.lower())
    if allowed is None or not set(config.optimizer_args) <= allowed:
        return False
    return all(isinstance(cb, Callback) for cb in callbacks) and mlp_layers(model) is not None


def _default(f: dataclasses.Field[Any]) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


class FlatParameters:
    """Every weight and bias of ``layers`` as views into one flat buffer, with a matching
    flat gradient buffer, so an optimizer update is a handful of calls on two tensors.

    The model's own parameters are re-pointed at the views while training (so evaluation
    and callbacks see the live weights) and get their own storage back in ``release``.
    """

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        self.params = [p for layer in layers for p in (layer.weight, layer.bias)]
        self.data = torch.cat([p.detach().reshape(-1) for p in self.params])
        self.grad = torch.zeros_like(self.data)
        self.weights, self.biases, self.weight_grads, self.bias_grads = [], [], [], []
        offset = 0
        for i, p in enumerate(self.params):
            view, grad = (t[offset:offset + p.numel()].view(p.shape) for t in (self.data, self.grad))
            offset += p.numel()
            (self.weights if i % 2 == 0 else self.biases).append(view)
            (self.weight_grads if i % 2 == 0 else self.bias_grads).append(grad)
            p.data = view

    def release(self) -> None:
        """Give each parameter its own contiguous storage again (safetensors refuses shared ones)."""
        for p in self.params:
            p.data = p.data.clone()


class UpdateRule:
    """An optimizer as in-place operations on the flat buffers, op for op as ``torch.optim``'s
    single-tensor (CPU default) implementation, so equal gradients give equal weights."""

    def __init__(self, name: str, lr: float, args: dict[str, Any], flat: FlatParameters) -> None:
        self.name, self.lr, self.flat, self.steps = name.lower(), lr, flat, 0
        zeros = torch.zeros_like
        if self.name == "rmsprop":  # Keras' RMSprop: alpha = rho, see build_optimizer
            self.rho, self.eps = args.get("rho", 0.9), args.get("eps", 1e-7)
            self.square_avg, self.avg = zeros(flat.data), zeros(flat.data)
        elif self.name == "adam":
            self.beta1, self.beta2 = tuple(args.get("betas", (0.9, 0.999)))
            self.eps = args.get("eps", 1e-7)
            self.exp_avg, self.exp_avg_sq = zeros(flat.data), zeros(flat.data)
        else:
            self.momentum, self.nesterov = args.get("momentum", 0.9), bool(args.get("nesterov", False))
            self.buf = zeros(flat.data)

    def step(self) -> None:
        """Apply one update from ``flat.grad``."""
        p, g = self.flat.data, self.flat.grad
        self.steps += 1
        if self.name == "rmsprop":
            self.square_avg.mul_(self.rho).addcmul_(g, g, value=1 - self.rho)
            torch.sqrt(self.square_avg, out=self.avg).add_(self.eps)
            p.addcdiv_(g, self.avg, value=-self.lr)
        elif self.name == "adam":
            self.exp_avg.lerp_(g, 1 - self.beta1)
            self.exp_avg_sq.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            step_size = self.lr / (1 - self.beta1 ** self.steps)
            denom = (self.exp_avg_sq.sqrt() / (1 - self.beta2 ** self.steps) ** 0.5).add_(self.eps)
            p.addcdiv_(self.exp_avg, denom, value=-step_size)
        else:
            self._sgd(p, g)

    def _sgd(self, p: torch.Tensor, g: torch.Tensor) -> None:
        if self.momentum == 0:
            p.add_(g, alpha=-self.lr)
            return
        if self.steps == 1:
            self.buf.copy_(g)  # torch.optim starts the momentum buffer at the first gradient
        else:
            self.buf.mul_(self.momentum).add_(g)
        p.add_(g.add(self.buf, alpha=self.momentum) if self.nesterov else self.buf, alpha=-self.lr)


class FusedMlpStep:
    """Forward, softmax cross-entropy and backward of an MLP, written out by hand into
    ``flat.grad``: what autograd computes, without its bookkeeping."""

    def __init__(self, flat: FlatParameters) -> None:
        self.flat = flat
        self.weights_t = [w.t() for w in flat.weights]  # (in, out) views, made once

    def __call__(self, x: torch.Tensor, target_grad: torch.Tensor, logits: torch.Tensor) -> None:
        """One batch: ``x`` (B, 784) scaled pixels; ``target_grad`` (B, 10) is -1/B at each
        true class, 0 elsewhere (the gradient of the mean NLL). Writes the logits (B, 10) into
        ``logits``: the epoch's loss and accuracy are computed from them afterwards."""
        f = self.flat
        activations = [x]  # input of each Linear, (B, width)
        for w_t, b in zip(self.weights_t[:-1], f.biases[:-1]):
            activations.append(torch.addmm(b, activations[-1], w_t).relu_())
        torch.addmm(f.biases[-1], activations[-1], self.weights_t[-1], out=logits)
        # d(mean cross-entropy)/d(logits) = (softmax - onehot) / B, by the very kernels autograd
        # runs for F.cross_entropy, so the gradients match it bit for bit.
        delta = torch.ops.aten._log_softmax_backward_data(target_grad, torch.log_softmax(logits, 1), 1,
                                                          logits.dtype)
        for i in range(len(f.weights) - 1, -1, -1):
            torch.mm(delta.t(), activations[i], out=f.weight_grads[i])
            torch.sum(delta, 0, out=f.bias_grads[i])
            if i:  # back through Linear i and the ReLU before it
                delta = torch.ops.aten.threshold_backward(delta.mm(f.weights[i]), activations[i], 0)


@contextmanager
def _cpu_settings(threads: int) -> Iterator[None]:
    """Run with ``threads`` intra-op threads and denormals flushed to zero, then restore both.

    RMSprop's running average of a pixel that stays blank decays by rho each step and
    spends hundreds of steps as a denormal float (below 1.2e-38), where every multiply and
    square root takes a slow microcode path. Flushing them to zero changes no weight
    (sqrt(v) < 1.1e-19 is lost next to eps = 1e-7 either way) and TensorFlow's CPU threads
    do the same. torch has no getter for the flag, so it is probed.
    """
    flushing_before = torch.tensor([1e-39]).mul_(1.0).item() == 0.0
    torch.set_flush_denormal(True)
    try:
        with use_threads(threads):
            yield
    finally:
        torch.set_flush_denormal(flushing_before)


def fit_fast(model: Classifier, train: DigitSet, config: TrainConfig, val: DigitSet | None = None,
             callbacks: Sequence[Callback] = ()) -> History:
    """``fit`` for a plain MLP on the CPU (see ``can_fit_fast``): the same history rows, the
    same callbacks (``on_batch_end`` every few steps and after the last one), the same weights."""
    layers = mlp_layers(model)
    if layers is None:
        raise ValueError("fit_fast needs a Classifier over Flatten, (Linear, ReLU)*, Linear")
    model.to("cpu")
    data = TensorSet.from_digits(train, torch.device("cpu"))
    val_data = TensorSet.from_digits(val, torch.device("cpu")) if val is not None and len(val) else None
    flat = FlatParameters(layers)
    threads = 1 if is_small_mlp(model) else torch.get_num_threads()
    try:
        with _cpu_settings(threads), torch.no_grad():
            return _train(model, data, val_data, flat, config, callbacks)
    finally:
        flat.release()


def _train(model: Classifier, data: TensorSet, val_data: TensorSet | None, flat: FlatParameters,
           config: TrainConfig, callbacks: Sequence[Callback]) -> History:
    pixels = data.x.reshape(len(data), 784)  # uint8: a quarter of the memory traffic of float32
    onehot = F.one_hot(data.y, 10).to(model.scale.dtype)
    rule = UpdateRule(config.optimizer, config.lr, dict(config.optimizer_args), flat)
    step = FusedMlpStep(flat)
    generator = torch.Generator().manual_seed(config.seed)  # the same draws as fit()
    steps = math.ceil(len(data) / config.batch_size)
    for cb in callbacks:
        cb.on_train_begin(config.epochs, steps)
    history = History()
    for epoch in range(1, config.epochs + 1):
        for cb in callbacks:
            cb.on_epoch_begin(epoch)
        model.train()
        started = time.perf_counter()
        order = torch.randperm(len(data), generator=generator) if config.shuffle else torch.arange(len(data))
        loss, acc = _train_epoch(model, step, rule, pixels, onehot, data.y, order, config.batch_size,
                                 callbacks, epoch)
        seconds = time.perf_counter() - started
        val_loss, val_acc = evaluate(model, val_data) if val_data is not None else (math.nan, math.nan)
        history.append({"epoch": epoch, "loss": loss, "accuracy": acc, "val_loss": val_loss,
                        "val_accuracy": val_acc, "lr": config.lr, "seconds": seconds})
        if any([cb.on_epoch_end(epoch, history.rows[-1]) for cb in callbacks]):
            break
    for cb in callbacks:
        cb.on_train_end(history)
    return history


def _reciprocal(n: int) -> float:
    # 1/n rounded to float32, as nll_loss's backward computes it (not 1/n in double).
    return (torch.tensor(1.0) / max(n, 1)).item()


def _train_epoch(model: Classifier, step: FusedMlpStep, rule: UpdateRule, pixels: torch.Tensor,
                 onehot: torch.Tensor, labels: torch.Tensor, order: torch.Tensor, batch_size: int,
                 callbacks: Sequence[Callback], epoch: int) -> tuple[float, float]:
    """One pass in ``order``; returns (mean loss, accuracy) of the logits seen while training."""
    logits = torch.empty(len(order), 10)  # (N, 10), in ``order``
    targets = onehot[order]
    full = len(order) // batch_size * batch_size
    targets[:full].mul_(-_reciprocal(batch_size))  # the last batch may be shorter
    targets[full:].mul_(-_reciprocal(len(order) - full))
    batches = list(zip(order.split(batch_size), targets.split(batch_size), logits.split(batch_size)))
    stride = max(1, len(batches) // PROGRESS_UPDATES)
    raw = torch.empty(batch_size, 784, dtype=pixels.dtype)
    x = torch.empty(batch_size, 784, dtype=model.scale.dtype)
    shift = float(model.shift) != 0.0  # adding +0.0 to the (non-negative) scaled pixels is a no-op
    for number, (idx, target, out) in enumerate(batches, start=1):
        # Exactly the model's own first step, float(pixels) * scale + shift, in place (a
        # mixed-dtype mul would allocate a converted copy first).
        batch = x[:len(idx)].copy_(torch.index_select(pixels, 0, idx, out=raw[:len(idx)])).mul_(model.scale)
        if shift:
            batch.add_(model.shift)
        step(batch, target, out)
        rule.step()
        if callbacks and (number % stride == 0 or number == len(batches)):
            for cb in callbacks:
                cb.on_batch_end(epoch, number)
    seen = labels[order]
    # Summed cross-entropy, log-sum-exp minus the true logit: 4x faster than F.cross_entropy here.
    loss = (torch.logsumexp(logits, 1).sum() - logits.gather(1, seen[:, None]).sum()).item() / max(len(order), 1)
    return loss, (logits.argmax(1) == seen).sum().item() / max(len(order), 1)
