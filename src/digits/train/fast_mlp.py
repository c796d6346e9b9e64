"""A hand-fused training step for plain MLPs on the CPU: the same mathematics, less overhead.

The tutorial's network is tiny (25,450 parameters), so the general loop spends almost all
of its time in per-step overhead: autograd bookkeeping, ``optimizer.step``'s Python,
``zero_grad``, a dozen small allocations. For a ``Classifier`` whose net is ``Flatten,
(Linear, ReLU)*, Linear`` this module writes the forward and backward pass out by hand
(``addmm``/``mm`` into preallocated gradient buffers, the very kernels autograd runs for
``F.cross_entropy``, no autograd) and applies RMSprop, Adam or SGD with ``torch.optim``'s
own in-place operations on flat buffers that hold every parameter back to back, so an
update is about five kernel calls whatever the depth.

``fit`` hands its epochs to ``FastMlpEpochs`` when ``can_fit_fast`` allows; everything else
(shuffling, evaluation, history, callbacks, checkpoints, resume, early stopping) stays in
``fit``. The optimizer remains a real ``torch.optim`` object whose state tensors are the ones
updated here, so a checkpoint from either path resumes in the other. With the same seed the
weights equal the general loop's bit for bit when both run on one thread
(``tests/test_fast_mlp.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from digits.hardware import SMALL_MODEL, use_threads
from digits.models.layers import Classifier
from digits.train.callbacks import Callback
from digits.train.config import TrainConfig
from digits.train.denormals import flushed_denormals

if TYPE_CHECKING:
    from digits.train.fit import TensorSet

# TrainConfig fields this path honours. Any other field (schedules, augmentation,
# checkpoints, ... added later) must keep its default, or fit() takes the general loop.
# (early stopping and best-weights are fit()'s business; CUDA graphs do not apply on the CPU).
HANDLED_FIELDS = frozenset({"model", "model_args", "epochs", "batch_size", "optimizer", "lr",
                            "optimizer_args", "val_split", "shuffle", "seed", "device", "early_stopping",
                            "monitor", "restore_best", "cuda_graphs", "precision"})
# Optimizer arguments (build_optimizer's names) the hand-written updates implement.
OPTIMIZER_ARGS = {"rmsprop": {"rho", "eps"}, "adam": {"betas", "eps"}, "sgd": {"momentum", "nesterov"}}
PROGRESS_UPDATES = 50  # on_batch_end calls per epoch: enough for a smooth bar, cheap next to 650 steps


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
    return layers is not None and sum(p.numel() for layer in layers for p in layer.parameters()) < SMALL_MODEL


def can_fit_fast(model: nn.Module, config: TrainConfig, callbacks: Sequence[Callback] = (),
                 device: torch.device | None = None) -> bool:
    """Whether ``FastMlpEpochs`` computes exactly what the general loop would for this run."""
    if device is not None and device.type != "cpu":
        return False  # a GPU has its own answer to per-step overhead (CUDA graphs, in fit)
    if config.precision not in ("fp32", "auto"):
        return False  # the fused steps compute in fp32
    if any(getattr(config, f.name) != _default(f) for f in dataclasses.fields(config)
           if f.name not in HANDLED_FIELDS):
        return False
    allowed = OPTIMIZER_ARGS.get(config.optimizer.lower())
    if allowed is None or not set(config.optimizer_args) <= allowed:
        return False
    return all(isinstance(cb, Callback) for cb in callbacks) and mlp_layers(model) is not None


def _default(f: dataclasses.Field[Any]) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def _flat(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One buffer holding copies of ``tensors`` back to back, and views of it shaped like them."""
    flat = torch.cat([t.detach().reshape(-1) for t in tensors])
    views, offset = [], 0
    for t in tensors:
        views.append(flat[offset:offset + t.numel()].view(t.shape))
        offset += t.numel()
    return flat, views


class UpdateRule:
    """The optimizer's update, op for op as ``torch.optim``'s single-tensor (CPU default)
    code, on flat buffers that hold every parameter (and every state tensor) back to back,
    so one update is about five kernel calls whatever the depth.

    For the epoch the model's parameters and the optimizer's state tensors are views of
    those buffers (callbacks see the live weights); ``release`` gives each its own storage
    again, since checkpoints (safetensors) refuse tensors that share memory.
    """

    STATE = {"rmsprop": ("square_avg",), "adam": ("exp_avg", "exp_avg_sq"), "sgd": ("momentum_buffer",)}

    def __init__(self, optimizer: torch.optim.Optimizer, params: list[nn.Parameter]) -> None:
        self.optimizer, self.params = optimizer, params
        self.group = optimizer.param_groups[0]
        self.kind = type(optimizer).__name__.lower()  # rmsprop | adam | sgd
        states = [optimizer.state[p] for p in params]
        # Read every epoch: resuming a checkpoint replaces the optimizer's state tensors.
        self.steps = int(states[0]["step"]) if states[0].get("step") is not None else 0
        self.started = bool(states[0].get(self.STATE[self.kind][0]) is not None)
        self.data, views = _flat([p.detach() for p in params])
        for p, view in zip(params, views):
            p.data = view
        self.grad, self.grads = _flat([torch.zeros_like(p) for p in params])
        self.buffers = {}
        for name in self.STATE[self.kind]:
            self.buffers[name], views = _flat([s[name] if self.started else torch.zeros_like(p)
                                              for s, p in zip(states, params)])
            for state, view in zip(states, views):
                state[name] = view
        self.avg = torch.empty_like(self.data)

    def step(self) -> None:
        """Apply one update from the flat gradient buffer."""
        self.steps += 1
        p, g, lr = self.data, self.grad, self.group["lr"]
        if self.kind == "rmsprop":
            rho, square_avg = self.group["alpha"], self.buffers["square_avg"]
            square_avg.mul_(rho).addcmul_(g, g, value=1 - rho)
            torch.sqrt(square_avg, out=self.avg).add_(self.group["eps"])
            p.addcdiv_(g, self.avg, value=-lr)
        elif self.kind == "adam":
            beta1, beta2 = self.group["betas"]
            exp_avg, exp_avg_sq = self.buffers["exp_avg"], self.buffers["exp_avg_sq"]
            exp_avg.lerp_(g, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            step_size = lr / (1 - beta1 ** self.steps)
            denom = (exp_avg_sq.sqrt() / (1 - beta2 ** self.steps) ** 0.5).add_(self.group["eps"])
            p.addcdiv_(exp_avg, denom, value=-step_size)
        else:
            self._sgd(p, g, lr)

    def _sgd(self, p: torch.Tensor, g: torch.Tensor, lr: float) -> None:
        momentum, buf = self.group["momentum"], self.buffers["momentum_buffer"]
        if momentum == 0:
            p.add_(g, alpha=-lr)
            return
        if not self.started:
            buf.copy_(g)  # torch.optim starts the momentum buffer at the first gradient
            self.started = True
        else:
            buf.mul_(momentum).add_(g, alpha=1 - self.group["dampening"])
        p.add_(g.add(buf, alpha=momentum) if self.group["nesterov"] else buf, alpha=-lr)

    def release(self) -> None:
        """Give parameters and state tensors their own storage; store the step count."""
        for p in self.params:
            p.data = p.data.clone()
            state = self.optimizer.state[p]
            for name in self.STATE[self.kind]:
                if self.started or self.kind != "sgd":
                    state[name] = state[name].clone()
                else:
                    state.pop(name, None)  # SGD before its first step keeps no buffer
            if self.kind != "sgd":
                state["step"] = torch.tensor(float(self.steps))


class FusedMlpStep:
    """Forward, softmax cross-entropy and backward of an MLP, written out by hand into
    gradient buffers: what autograd computes, without its bookkeeping."""

    def __init__(self, layers: Sequence[nn.Linear], grads: list[torch.Tensor]) -> None:
        self.weights_t = [layer.weight.detach().t() for layer in layers]  # (in, out) views
        self.biases = [layer.bias.detach() for layer in layers]
        self.weight_grads, self.bias_grads = grads[0::2], grads[1::2]  # views of the flat gradient

    def __call__(self, x: torch.Tensor, target_grad: torch.Tensor, logits: torch.Tensor) -> None:
        """One batch: ``x`` (B, 784) scaled pixels; ``target_grad`` (B, 10) is -1/B at each
        true class, 0 elsewhere (the gradient of the mean NLL). Writes the logits (B, 10) into
        ``logits``: the epoch's loss and accuracy are computed from them afterwards."""
        activations = [x]  # input of each Linear, (B, width)
        for w_t, b in zip(self.weights_t[:-1], self.biases[:-1]):
            activations.append(torch.addmm(b, activations[-1], w_t).relu_())
        torch.addmm(self.biases[-1], activations[-1], self.weights_t[-1], out=logits)
        # d(mean cross-entropy)/d(logits) = (softmax - onehot) / B, by the very kernels autograd
        # runs for F.cross_entropy, so the gradients match it bit for bit.
        delta = torch.ops.aten._log_softmax_backward_data(target_grad, torch.log_softmax(logits, 1), 1,
                                                          logits.dtype)
        for i in range(len(self.weights_t) - 1, -1, -1):
            torch.mm(delta.t(), activations[i], out=self.weight_grads[i])
            torch.sum(delta, 0, out=self.bias_grads[i])
            if i:  # back through Linear i and the ReLU before it
                delta = torch.ops.aten.threshold_backward(delta.mm(self.weights_t[i].t()), activations[i], 0)


@contextmanager
def _cpu_settings(threads: int) -> Iterator[None]:
    """``threads`` intra-op threads and denormals flushed to zero, both restored afterwards."""
    with flushed_denormals(), use_threads(threads):
        yield


class FastMlpEpochs:
    """Training epochs of a plain MLP on the CPU, in place of fit()'s ``train_one_epoch``.

    ``optimizer`` is the one fit() built for ``model`` (build_optimizer: one parameter group,
    the parameters in model order); its state is updated in place here.
    """

    def __init__(self, model: Classifier, optimizer: torch.optim.Optimizer, batch_size: int,
                 callbacks: Sequence[Callback] = ()) -> None:
        layers = mlp_layers(model)
        if layers is None:
            raise ValueError("FastMlpEpochs needs a Classifier over Flatten, (Linear, ReLU)*, Linear")
        self.params = [p for layer in layers for p in (layer.weight, layer.bias)]
        group = optimizer.param_groups[0]["params"]
        if len(optimizer.param_groups) != 1 or len(group) != len(self.params) or any(
                a is not b for a, b in zip(group, self.params)):
            raise ValueError("FastMlpEpochs needs an optimizer over exactly the model's parameters, in order")
        self.model, self.optimizer, self.batch_size, self.callbacks = model, optimizer, batch_size, callbacks
        self.threads = 1 if is_small_mlp(model) else torch.get_num_threads()

    def run_epoch(self, data: TensorSet, order: torch.Tensor, epoch: int) -> tuple[float, float, float]:
        """One pass over ``data`` (uint8 images on the CPU) in ``order``; returns (mean loss,
        accuracy, learning rate), as train_one_epoch does."""
        self.model.train()
        with _cpu_settings(self.threads), torch.no_grad():
            rule = UpdateRule(self.optimizer, self.params)
            try:
                step = FusedMlpStep(mlp_layers(self.model), rule.grads)
                loss, acc = _train_epoch(self.model, step, rule, data.x.reshape(len(data), 784), data.y,
                                         order, self.batch_size, self.callbacks, epoch)
            finally:
                rule.release()
        return loss, acc, rule.group["lr"]


def _reciprocal(n: int) -> float:
    # 1/n rounded to float32, as nll_loss's backward computes it (not 1/n in double).
    return (torch.tensor(1.0) / max(n, 1)).item()


def _train_epoch(model: Classifier, step: FusedMlpStep, rule: UpdateRule, pixels: torch.Tensor,
                 labels: torch.Tensor, order: torch.Tensor, batch_size: int,
                 callbacks: Sequence[Callback], epoch: int) -> tuple[float, float]:
    """One pass in ``order``; returns (mean loss, accuracy) of the logits seen while training."""
    logits = torch.empty(len(order), 10)  # (N, 10), in ``order``
    seen = labels[order]
    targets = F.one_hot(seen, 10).to(model.scale.dtype)
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
    # Summed cross-entropy, log-sum-exp minus the true logit: 4x faster than F.cross_entropy here.
    loss = (torch.logsumexp(logits, 1).sum() - logits.gather(1, seen[:, None]).sum()).item() / max(len(order), 1)
    return loss, (logits.argmax(1) == seen).sum().item() / max(len(order), 1)
