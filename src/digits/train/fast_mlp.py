"""The fused MLP engine: plain MLPs on the CPU, one or several side by side, with the forward
and backward pass and the optimizer's update written out by hand.

Why: the tutorial's network is tiny (25,450 parameters), so the general engine spends almost
all of its time in per-step overhead (autograd's bookkeeping, ``optimizer.step``'s Python,
``zero_grad``, small allocations). Here a step is a few ``addmm``/``mm`` into preallocated
gradients (the kernels autograd runs) and one update over flat buffers holding every parameter.

Side by side (the tutorial grid's widths), M MLPs of one depth are one wider MLP: their first
layers sit next to each other and every later layer is block-diagonal (each model's units read
only its own), so the models never mix: each model's loss depends only on its own parameters
and the summed loss gives each its own gradient. One model is a stack of one.

Pixels blank in every training row are left out of the first layer (its weights there get zero
gradients and never move, nor does their optimizer state). ``precision="bf16"`` runs the first
layer's two big matmuls in bf16 (AMX on recent CPUs); weights, gradients and updates stay fp32.
The models' parameters and their torch.optim state are copied in when an epoch starts and back
when it ends, so evaluation, callbacks and checkpoints see ordinary modules and optimizers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from digits.data.tensors import TensorSet
from digits.hardware import SMALL_MODEL, use_threads
from digits.models.layers import Classifier
from digits.precision import autocast
from digits.train.config import TrainConfig
from digits.train.denormals import flushed_denormals
from digits.train.engines import Claims, Results, claims
from digits.train.optim import build_optimizer
from digits.train.schedule import Rates, cycles_momentum, set_rate

# The update rules written out here: their state tensors (torch.optim's names) and the
# optimizer arguments (build_optimizer's names) each implements.
STATE = {"rmsprop": ("square_avg",), "adam": ("exp_avg", "exp_avg_sq"), "sgd": ("momentum_buffer",)}
RULE_ARGS = {"rmsprop": {"rho", "eps"}, "adam": {"betas", "eps"}, "sgd": {"momentum", "nesterov"}}
CLAIMS: Claims = {"optimizer": lambda v, c: v in STATE, "precision": lambda v, c: v in ("fp32", "bf16"),
                  "optimizer_args": lambda v, c: set(v) <= RULE_ARGS.get(c.optimizer, set()),
                  "weight_decay": lambda v, c: v == 0, "label_smoothing": lambda v, c: v == 0,
                  "outlier_exposure": lambda v, c: v == 0,
                  "augment": lambda v, c: not v, "compile": lambda v, c: not v, "channels_last": lambda v, c: not v,
                  "cuda_graphs": lambda v, c: not v}


def mlp_layers(model: nn.Module) -> list[nn.Linear] | None:
    """The Linear layers of a ``Classifier(Flatten, (Linear, ReLU)*, Linear)``, else None."""
    if not isinstance(model, Classifier) or not isinstance(model.net, nn.Sequential):
        return None
    modules = list(model.net)
    if len(modules) < 2 or not isinstance(modules[0], nn.Flatten) or len(modules) % 2:
        return None
    linears, relus = modules[1::2], modules[2::2]
    if not all(type(m) is nn.Linear and m.bias is not None for m in linears) or any(type(m) is not nn.ReLU
                                                                                for m in relus):
        return None
    if linears[0].in_features != 784 or any(a.out_features != b.in_features for a, b in zip(linears, linears[1:])):
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


def _flat(shapes: Sequence[tuple[int, ...]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One zeroed buffer and views of it shaped as ``shapes``, back to back."""
    sizes = [math.prod(s) for s in shapes]
    flat = torch.zeros(sum(sizes))
    return flat, [part.view(shape) for part, shape in zip(flat.split(sizes), shapes)]


class UpdateRule:
    """RMSprop, Adam or SGD, once each, on flat buffers (every parameter back to back).

    RMSprop is torch's fused Adam kernel with beta1 = 0 (see ``_rmsprop``); Adam and SGD are
    op for op ``torch.optim``'s single-tensor (CPU default) code. ``group`` is the optimizer's
    parameter group, read at every step (the schedule sets its rate there).
    """

    def __init__(self, kind: str, params: torch.Tensor, state: dict[str, torch.Tensor], steps: int,
                 started: bool) -> None:
        self.kind, self.params, self.state, self.steps, self.started = kind, params, state, steps, started

    def step(self, grad: torch.Tensor, group: dict) -> None:
        self.steps += 1
        p, lr = self.params, group["lr"]
        if self.kind == "rmsprop":
            self._rmsprop(grad, lr, group["alpha"], group["eps"])
        elif self.kind == "adam":
            (beta1, beta2), exp_avg, exp_avg_sq = group["betas"], self.state["exp_avg"], self.state["exp_avg_sq"]
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / (1 - beta2 ** self.steps) ** 0.5).add_(group["eps"])
            p.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1 ** self.steps))
        elif group["momentum"] == 0:
            p.add_(grad, alpha=-lr)
        else:
            buf, momentum = self.state["momentum_buffer"], group["momentum"]
            if self.started:
                buf.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
            else:
                buf.copy_(grad)  # torch.optim starts the momentum buffer at the first gradient
            self.started = True
            p.add_(grad.add(buf, alpha=momentum) if group["nesterov"] else buf, alpha=-lr)

    def _rmsprop(self, grad: torch.Tensor, lr: float, rho: float, eps: float) -> None:
        """Keras' RMSprop, ``v = rho*v + (1-rho)*g^2; w -= lr*g/(sqrt(v)+eps)``, as one pass over memory.

        Why Adam: PyTorch has a fused CPU kernel for Adam and none for RMSprop, and the update is
        memory-bound (the grid's stack: several times faster than six passes). Adam with beta1 = 0
        keeps its first moment equal to g (so the gradient itself is passed as that moment: the
        kernel is elementwise, aliasing is safe), and at a step count this large its bias
        corrections are exactly 1 (1 - 0.9**1e6 == 1.0 in double), which leaves exactly this update.
        """
        torch._fused_adam_([self.params], [grad], [grad], [self.state["square_avg"]], [], [torch.tensor(1e6)],
                           lr=lr, beta1=0.0, beta2=rho, weight_decay=0.0, eps=eps, amsgrad=False, maximize=False)


class MlpStack:
    """M MLPs of one depth side by side: layer i is ``weights[i]`` (out, in), as ``nn.Linear``
    stores it, the models' rows stacked; for i >= 1 block-diagonal (``masks``), model m owning
    rows ``rows[i][m]:rows[i][m+1]`` and the columns of its rows in layer i - 1. The first layer
    reads ``pixels`` (indices into the 784)."""

    def __init__(self, layers: Sequence[Sequence[nn.Linear]], pixels: torch.Tensor, scale: float,
                 precision: str) -> None:
        self.pixels, self.scale, self.precision = pixels, scale, precision
        self.rows = [np.concatenate([[0], np.cumsum([m[i].out_features for m in layers])]).tolist()
                     for i in range(len(layers[0]))]
        ins = [len(pixels)] + [r[-1] for r in self.rows[:-1]]
        shapes = [s for r, n in zip(self.rows, ins) for s in ((r[-1], n), (r[-1],))]
        self.flat, self.views = _flat(shapes)
        self.weights, self.biases = self.views[0::2], self.views[1::2]
        self.grad, grads = _flat(shapes)
        self.weight_grads, self.bias_grads = grads[0::2], grads[1::2]
        blocks, views = _flat(shapes)  # 1 where a weight belongs to a model
        for m in range(len(layers)):
            for piece in self.pieces(views, m):
                piece.fill_(1.0)
        self.masks = [None] + (views[2::2] if len(layers) > 1 else [None] * (len(self.rows) - 1))
        self.shapes, self.count = shapes, len(layers)
        self._w16 = torch.empty(self.weights[0].shape, dtype=torch.bfloat16) if precision == "bf16" else None
        self._g16 = torch.empty_like(self._w16) if self._w16 is not None else None

    def pieces(self, views: Sequence[torch.Tensor], m: int) -> list[torch.Tensor]:
        """Model m's parts of packed tensors laid out as the parameters (weight, bias per layer)."""
        out = []
        for i, rows in enumerate(self.rows):
            own = slice(rows[m], rows[m + 1])
            weight = views[2 * i][own]
            out += [weight if i == 0 else weight[:, self.rows[i - 1][m]:self.rows[i - 1][m + 1]], views[2 * i + 1][own]]
        return out

    def copy(self, views: Sequence[torch.Tensor], tensors: Sequence[Sequence[torch.Tensor]], into: bool) -> None:
        """Each model's ``tensors`` (shaped as its parameters) into the packed ``views``, or back out."""
        for m, own in enumerate(tensors):
            for k, (piece, tensor) in enumerate(zip(self.pieces(views, m), own)):
                if into:
                    piece.copy_(tensor[:, self.pixels] if k == 0 else tensor)
                elif k == 0:
                    tensor[:, self.pixels] = piece
                else:
                    tensor.copy_(piece)

    def _linear(self, i: int, a: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if i == 0 and self._w16 is not None:  # bf16 inputs are the pixels 0-255 themselves: scale the products
            w16 = self._w16.copy_(self.weights[0])
            z = torch.addmm(self.biases[0].to(torch.bfloat16), a, w16.t(), alpha=self.scale).float()
            return z if out is None else out.copy_(z)
        return torch.addmm(self.biases[i], a, self.weights[i].t(), out=out)

    def step(self, x: torch.Tensor, target_grad: torch.Tensor, logits: torch.Tensor) -> None:
        """Forward, softmax cross-entropy and backward of one batch, into ``grad``: ``x`` (B, P) the
        first layer's inputs; ``target_grad`` (B * M, 10) is -1/B at each model's true class, 0
        elsewhere (the gradient of the mean NLL). Writes the logits (B, 10M) into ``logits``."""
        activations = [x]  # input of each layer, (B, width)
        for i in range(len(self.rows) - 1):
            activations.append(self._linear(i, activations[-1]).relu_())
        self._linear(len(self.rows) - 1, activations[-1], out=logits)
        # d(mean cross-entropy)/d(logits) = (softmax - onehot) / B, by the very kernels autograd
        # runs for F.cross_entropy, so that one model's gradients match it.
        flat = logits.view(-1, 10)
        delta = torch.ops.aten._log_softmax_backward_data(target_grad, torch.log_softmax(flat, 1), 1,
                                                          flat.dtype).view(len(x), -1)
        for i in range(len(self.rows) - 1, -1, -1):
            if i == 0 and self._g16 is not None:  # bf16 products, fp32 gradient
                self.weight_grads[0].copy_(self._g16.addmm_(delta.t().to(torch.bfloat16), activations[0], beta=0,
                                                            alpha=self.scale))
            else:
                torch.mm(delta.t(), activations[i], out=self.weight_grads[i])
            if self.masks[i] is not None:
                self.weight_grads[i].mul_(self.masks[i])  # only each model's own block
            torch.sum(delta, 0, out=self.bias_grads[i])
            if i:  # back through layer i and the ReLU before it
                delta = torch.ops.aten.threshold_backward(delta.mm(self.weights[i]), activations[i], 0)


def _reciprocal(n: int) -> float:
    # 1/n rounded to float32, as nll_loss's backward computes it (not 1/n in double).
    return (torch.tensor(1.0) / max(n, 1)).item()


class FusedMlpEngine:
    """Trains ``Classifier(Flatten, (Linear, ReLU)*, Linear)`` models on the CPU, side by side."""

    checkpoints = True

    @staticmethod
    def supports(models: Sequence[nn.Module], config: TrainConfig, device: torch.device) -> bool:
        layers = [mlp_layers(m) for m in models]
        if device.type != "cpu" or any(ls is None or ls[-1].out_features != 10 for ls in layers):
            return False
        inputs = {(float(m.scale), float(m.shift)) for m in models}  # one input for every model
        if len(inputs) != 1 or len({len(ls) for ls in layers}) != 1:
            return False
        if config.precision == "bf16" and next(iter(inputs))[1] != 0:
            return False  # the bf16 first layer reads the pixels unshifted
        return not (config.optimizer == "rmsprop" and cycles_momentum(config)) and claims(config, CLAIMS)

    def __init__(self, models: Sequence[Classifier], data: TensorSet, config: TrainConfig) -> None:
        self.models, self.config = list(models), config
        self.layers = [mlp_layers(m) for m in models]
        self.params = [[p for layer in ls for p in (layer.weight, layer.bias)] for ls in self.layers]
        self.optimizers = [build_optimizer(config.optimizer, ps, config.lr, **config.optimizer_args)
                           for ps in self.params]
        self.kind = config.optimizer.lower()
        pixels_of_rows = data.x.reshape(len(data), 784)
        self.scale, self.shift = float(models[0].scale), float(models[0].shift)
        # Blank in every training row, and unshifted: zero inputs, zero gradients.
        pixels = ((pixels_of_rows.amax(0) > 0).nonzero().squeeze(1) if self.shift == 0.0 else torch.arange(784))
        self.inputs, self.labels = pixels_of_rows[:, pixels].contiguous(), data.y
        self.stack = MlpStack(self.layers, pixels, self.scale, config.precision)
        self.steps = -(-len(data) // config.batch_size)
        total = sum(p.numel() for ps in self.params for p in ps)
        self.threads = 1 if total < SMALL_MODEL else torch.get_num_threads()
        self._held_out: tuple[TensorSet, torch.Tensor] | None = None  # the rows evaluate saw last, scaled

    def state_dict(self) -> dict[str, Any]:
        """Nothing beyond the models and their optimizers, which hold the weights and the update
        rule's state between epochs: no loss scaling (fp32 and bf16 only), no outlier draws."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to take back (see :meth:`state_dict`)."""

    def _start(self) -> UpdateRule:
        """Copy the weights and optimizer state in (read every epoch: resuming replaces the state tensors)."""
        stack, name0 = self.stack, STATE[self.kind][0]
        stack.copy(stack.views, self.params, into=True)
        states = [[opt.state[p] for p in ps] for opt, ps in zip(self.optimizers, self.params)]
        started = states[0][0].get(name0) is not None
        buffers, self.state_views = {}, {}
        for name in STATE[self.kind]:
            buffers[name], self.state_views[name] = _flat(stack.shapes)
            if started:
                stack.copy(self.state_views[name], [[s[name] for s in own] for own in states], into=True)
        steps = int(states[0][0]["step"]) if states[0][0].get("step") is not None else 0
        return UpdateRule(self.kind, stack.flat, buffers, steps, started)

    def _finish(self, rule: UpdateRule) -> None:
        """Copy the weights and optimizer state back into the models and their optimizers."""
        self.stack.copy(self.stack.views, self.params, into=False)
        if self.kind == "sgd" and not rule.started:
            return  # SGD before its first step (or without momentum) keeps no state
        for opt, ps in zip(self.optimizers, self.params):
            for p in ps:
                state = opt.state[p]
                for name in STATE[self.kind]:
                    if state.get(name) is None:
                        state[name] = torch.zeros_like(p)
                if self.kind != "sgd":
                    state["step"] = torch.tensor(float(rule.steps))
        for name, views in self.state_views.items():
            self.stack.copy(views, [[opt.state[p][name] for p in ps] for opt, ps in zip(self.optimizers, self.params)],
                            into=False)

    def run_epoch(self, order: torch.Tensor, rates: Rates, progress: Callable[[int], None]) -> Results:
        """One pass over the rows in ``order``: each model's (mean loss, accuracy) of the logits
        seen while training."""
        for model in self.models:
            model.train()
        with flushed_denormals(), use_threads(self.threads), torch.no_grad():
            rule = self._start()
            try:
                return self._epoch(rule, order, rates, progress)
            finally:
                self._finish(rule)

    @torch.no_grad()
    def evaluate(self, data: TensorSet, batch_size: int = 4096) -> Results:
        """Every model's (mean cross-entropy, accuracy) on held-out ``data``, as ``evaluate`` gives
        each, in one pass through the stack.

        Why not model by model: the grid's fits spent much of their time there (benchmarks/RESULTS.md),
        each model scaling every row again and running its own narrow matmul. Here the rows are scaled
        once per fit and each layer is one wide matmul. The first layer is read from the models
        whole (all 784 pixels: a held-out row may have ink where no training row has)."""
        if self._held_out is None or self._held_out[0] is not data:
            x = data.x.reshape(len(data), 784).float().mul_(self.scale)
            self._held_out = data, (x.add_(self.shift) if self.shift else x)
        x, m, last = self._held_out[1], self.stack.count, len(self.stack.rows) - 1
        self.stack.copy(self.stack.views, self.params, into=True)  # the models' weights as they are now
        layers = [(torch.cat([ls[0].weight for ls in self.layers]), torch.cat([ls[0].bias for ls in self.layers]))]
        layers += list(zip(self.stack.weights[1:], self.stack.biases[1:]))  # block-diagonal: models never mix
        loss_sums, hits = torch.zeros(m, dtype=torch.float64), torch.zeros(m, dtype=torch.int64)
        with autocast(x.device, self.config.precision):
            for start in range(0, len(x), batch_size):
                a, y = x[start:start + batch_size], data.y[start:start + batch_size]
                for i, (weight, bias) in enumerate(layers):
                    a = torch.addmm(bias, a, weight.t())
                    a = a.relu_() if i < last else a
                logits = a.float().view(len(y), m, 10)
                truth = logits.gather(2, y[:, None, None].expand(-1, m, 1)).squeeze(2)
                loss_sums += (torch.logsumexp(logits, 2) - truth).sum(0, dtype=torch.float64)
                hits += (logits.argmax(2) == y[:, None]).sum(0)
        n = max(len(data), 1)
        return [(loss / n, hit / n) for loss, hit in zip(loss_sums.tolist(), hits.tolist())]

    def _epoch(self, rule: UpdateRule, order: torch.Tensor, rates: Rates, progress: Callable[[int], None]) -> Results:
        (lrs, momenta), batch_size, m = rates, self.config.batch_size, self.stack.count
        logits = torch.empty(len(order), 10 * m)  # (N, 10M), in ``order``
        seen = self.labels[order]
        targets = F.one_hot(seen, 10).float()
        full = len(order) // batch_size * batch_size
        targets[:full].mul_(-_reciprocal(batch_size))  # the last batch may be shorter
        targets[full:].mul_(-_reciprocal(len(order) - full))
        targets = targets[:, None].expand(-1, m, -1).contiguous()  # (N, M, 10): every model the same
        raw = torch.empty(batch_size, self.inputs.shape[1], dtype=self.inputs.dtype)
        x = torch.empty(raw.shape, dtype=torch.bfloat16 if self.config.precision == "bf16" else torch.float32)
        group = self.optimizers[0].param_groups[0]
        for step, (idx, target, out) in enumerate(zip(order.split(batch_size), targets.split(batch_size),
                                                      logits.split(batch_size))):
            batch = x[:len(idx)].copy_(torch.index_select(self.inputs, 0, idx, out=raw[:len(idx)]))
            if x.dtype == torch.float32:
                # Exactly the model's own first step, float(pixels) * scale + shift, in place.
                batch.mul_(self.scale)
                if self.shift:
                    batch.add_(self.shift)
            self.stack.step(batch, target.view(-1, 10), out)
            set_rate(group, lrs[step], momenta[step] if momenta else None)
            rule.step(self.stack.grad, group)
            progress(step + 1)
        per_model = logits.view(len(order), m, 10)
        # Summed cross-entropy, log-sum-exp minus the true logit: 4x faster than F.cross_entropy here.
        losses = torch.logsumexp(per_model, 2).sum(0) - per_model.gather(2, seen[:, None, None].expand(-1, m, 1)).sum((0, 2))
        hits = (per_model.argmax(2) == seen[:, None]).sum(0)
        n = max(len(order), 1)
        return [(loss / n, hit / n) for loss, hit in zip(losses.tolist(), hits.tolist())]
