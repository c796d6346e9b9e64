"""Training with CUDA graphs: whole optimizer steps recorded once and replayed.

A small CNN at batch 256 leaves an H100 idle most of the time: the CPU cannot launch
~150 kernels per step fast enough. Here a block of steps (forward, loss, backward, Adam
or SGD, accuracy counters, the learning rate of each step) is captured into one CUDA graph;
an epoch is a handful of replays. What remains is the time of the kernels themselves, so
each step launches as few as it can: a few copies before each replay stage the block's
rows, learning rates and (outlier exposure) non-digit pictures into fixed buffers (no index
arithmetic in the graph), and gradients are set to None after each step (the backward writes
them instead of adding to zeros). With ``compile``, the forward pass and the loss are compiled
as one function before capture, which fuses the loss's small operations too.

The arithmetic is that of the general engine (the tests check it on the CPU, running the
same steps without capture), but for the last partial batch of an epoch, which is dropped (a
graph has fixed shapes). The learning rate and one-cycle's momentum are device tensors set
from the loop's table of the epoch. The steps after the last whole block have their own graph.
``reset`` starts over with fresh weights, so a benchmark's seeds reuse the captured graph.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from digits.data.tensors import TensorSet
from digits.errors import DigitsError
from digits.precision import autocast
from digits.train.augment import augment_batch
from digits.train.config import TrainConfig
from digits.train.engines import (
    EngineUnavailable,
    Results,
    evaluate_each,
    outlier_bank,
    outlier_count,
    outlier_draws,
    outlier_loss,
)
from digits.train.schedule import Rates, cycles_momentum

GRAPH_STEPS = 16  # optimizer steps recorded per graph; an epoch replays it steps // 16 times


class GraphedEngine:
    """Trains one model with captured CUDA graphs, when the config asks for them on a CUDA device.

    ``capture=False`` runs the very same steps eagerly instead of replaying graphs, on any
    device: that is how the tests check the graphed arithmetic on a machine without a GPU.
    """

    checkpoints = False  # the optimizer's rate is a device tensor the graphs read: nothing to resume from

    @staticmethod
    def supports(models: Sequence[nn.Module], config: TrainConfig, device: torch.device) -> bool:
        return device.type == "cuda" and config.cuda_graphs and len(models) == 1

    def __init__(self, models: Sequence[nn.Module], data: TensorSet, config: TrainConfig,
                 capture: bool = True) -> None:
        if capture and data.x.device.type != "cuda":
            raise DigitsError("CUDA graphs need a CUDA device")
        if config.optimizer not in ("adam", "adamw", "sgd"):
            raise DigitsError(f"CUDA graphs support adam, adamw and sgd, not {config.optimizer}")
        (self.model,) = models
        self.data, self.config, self.capture = data, config, capture
        device = data.x.device
        if capture:
            # cuDNN must choose its kernels by timing them in the warm-up steps: a graph keeps the
            # kernel chosen at capture, and the untimed default was 4x slower for fast-cnn's conv.
            torch.backends.cudnn.benchmark = True
        self.batch = config.batch_size
        self.steps = len(data) // self.batch                                  # full batches only
        if self.steps < 1:
            raise DigitsError(f"CUDA graphs need at least one full batch of {self.batch} rows")
        self.block = min(GRAPH_STEPS, self.steps)
        self.lr = torch.tensor(config.lr, device=device)
        # One-cycle's momentum cycling, when on: beta1 is a device tensor set every step, as lr is.
        self.cycles = cycles_momentum(config)
        self.beta1 = torch.tensor(float(config.optimizer_args.get("betas", (0.9, 0.999))[0]), device=device)
        self.block_beta1 = torch.zeros(self.block, device=device)
        # One block's inputs, staged by a few copies before each replay, and its per-step results.
        # Step i of a graph reads slot i: fixed addresses, so no index arithmetic in the graph.
        self.block_x = torch.zeros((self.block, self.batch, 28, 28), dtype=torch.uint8, device=device)
        self.block_y = torch.zeros((self.block, self.batch), dtype=torch.long, device=device)
        # Outlier exposure: the general engine's draws from the same generator, a block of steps'
        # worth at a time (the host generator gives the same numbers either way), staged like the rows.
        self.outliers = outlier_bank(data, config)
        self.outlier_draws = outlier_draws(config)
        self.block_outliers = (None if self.outliers is None else
                               torch.zeros((self.block, outlier_count(self.batch), 28, 28), dtype=torch.uint8,
                                           device=device))
        self.block_lr = torch.zeros(self.block, device=device)
        self.block_loss = torch.zeros(self.block, device=device)
        self.block_hits = torch.zeros((self.block, self.batch), dtype=torch.bool, device=device)
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.optimizer = self._make_optimizer()
        self.optimizers = [self.optimizer]
        self.scaler = _GraphScaler(device) if config.precision == "fp16" else None
        if self.scaler is not None:
            if not self.optimizer.defaults.get("fused"):
                raise DigitsError("fp16 with CUDA graphs needs a fused optimizer (adam, adamw or sgd with "
                                  "schedule_args cycle_momentum = false), which skips overflowed steps on the device; "
                                  "or train without cuda_graphs")
            self.optimizer.found_inf = self.scaler.found_inf  # read by the fused kernel: skip when set
        # compile: the forward pass and the loss as one function, so that the backward of both
        # is compiled too and the loss's many small operations fuse with the model's.
        self.loss_and_hits = torch.compile(self._loss_and_hits) if config.compile else self._loss_and_hits
        try:
            self.graph = self._capture(self.block)
            tail = self.steps % self.block
            self.tail_graph = self._capture(tail) if tail else None
        except RuntimeError as exc:  # an operation that cannot be captured: train eagerly instead
            if capture:
                torch.cuda.synchronize()
            raise EngineUnavailable(f"CUDA graph capture failed, training without graphs: {exc}") from None

    def _make_optimizer(self) -> torch.optim.Optimizer:
        args = dict(self.config.optimizer_args)
        wd = self.config.weight_decay
        if self.config.optimizer == "sgd":
            if self.cycles:
                raise DigitsError("CUDA graphs cannot cycle SGD's momentum; set schedule_args "
                                  "cycle_momentum = false, or train without cuda_graphs")
            if self.config.precision == "fp16":
                args.setdefault("fused", True)  # skips overflowed fp16 steps on the device
            return torch.optim.SGD(self.model.parameters(), lr=self.lr, momentum=args.pop("momentum", 0.9),
                                   weight_decay=wd, **args)
        cls = torch.optim.Adam if self.config.optimizer == "adam" else torch.optim.AdamW
        betas = tuple(args.pop("betas", (0.9, 0.999)))
        if not self.cycles:
            # fused: one kernel for the whole update (graph-safe; it reads lr from the device).
            args.setdefault("fused", True)
        else:
            # The fused kernel takes beta1 as a host number, which a graph would freeze at its
            # captured value; the capturable multi-tensor update reads it from the device.
            betas = (self.beta1, torch.tensor(float(betas[1]), device=self.beta1.device))
            args.update(fused=False, foreach=self.capture)
        return cls(self.model.parameters(), lr=self.lr, betas=betas, eps=args.pop("eps", 1e-7),
                   weight_decay=wd, capturable=self.capture, **args)

    def _one_step(self, i: int) -> None:
        x, y = self.block_x[i], self.block_y[i]
        if self.block_outliers is not None:  # the non-digits after the digits, augmented alike
            x = torch.cat([x, self.block_outliers[i]])
        if self.config.augment:  # random draws inside a graph use CUDA's graph-safe generator
            x = augment_batch(x, **self.config.augment)
        self.lr.copy_(self.block_lr[i])
        if self.cycles:
            self.beta1.copy_(self.block_beta1[i])
        loss, digits_loss, hits = self.loss_and_hits(x, y)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale([p.grad for p in self.model.parameters() if p.grad is not None])
            self.optimizer.step()
            self.scaler.update()
        # None, not zeros: the next backward then writes each gradient in place of accumulating
        # into zeroed buffers, one kernel fewer per parameter plus the zeroing (the pattern of
        # PyTorch's whole-network capture example).
        self.optimizer.zero_grad(set_to_none=True)
        self.block_loss[i].copy_(digits_loss.detach())  # the history's loss: the digits' own
        self.block_hits[i].copy_(hits)

    def _loss_and_hits(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch's loss to step on, its digits' own mean loss, and which digits the model read
        right. ``x`` holds the batch's digits, then (outlier exposure) its non-digits."""
        with autocast(x.device, self.config.precision):
            logits = self.model(x).float()
        digits = logits[:len(y)]
        digits_loss = loss = F.cross_entropy(digits, y, label_smoothing=self.config.label_smoothing)
        if self.block_outliers is not None:
            loss = loss + self.config.outlier_exposure * outlier_loss(logits[len(y):])
        return loss, digits_loss, digits.detach().argmax(1) == y

    def _capture(self, steps: int) -> torch.cuda.CUDAGraph | SimpleNamespace:
        """Record ``steps`` optimizer steps; the warm-up steps before it leave no trace."""
        if not self.capture:  # in place of a graph: replay runs the very steps in Python
            return SimpleNamespace(replay=lambda: [self._one_step(i) for i in range(steps)])
        saved = self._snapshot()
        self.model.train()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up: cuDNN picks its kernels, Adam allocates its state
            for _ in range(2):
                self._one_step(0)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for i in range(steps):
                self._one_step(i)
        self._restore(saved)
        return graph

    def _snapshot(self) -> list[torch.Tensor]:
        return [t.detach().clone() for t in self._state_tensors()]

    def _state_tensors(self) -> list[torch.Tensor]:
        tensors = [p for p in self.model.parameters()] + list(self.model.buffers())
        for state in self.optimizer.state.values():
            tensors += [v for v in state.values() if torch.is_tensor(v)]
        return tensors

    def _restore(self, saved: Sequence[torch.Tensor]) -> None:
        current = self._state_tensors()
        with torch.no_grad():
            for tensor, value in zip(current, saved):
                tensor.copy_(value)
            for tensor in current[len(saved):]:  # optimizer state created during warm-up
                tensor.zero_()

    def reset(self, weights: dict[str, torch.Tensor]) -> None:
        """Load fresh weights in place and zero the optimizer state: a new run, same graph."""
        with torch.no_grad():
            for name, tensor in self.model.state_dict().items():
                tensor.copy_(weights[name])
            for state in self.optimizer.state.values():
                for value in state.values():
                    if torch.is_tensor(value):
                        value.zero_()
            if self.scaler is not None:
                self.scaler.reset()
        self.outlier_draws = outlier_draws(self.config)  # the same non-digits as the first run drew

    def evaluate(self, data: TensorSet) -> Results:
        """The model's (mean cross-entropy, accuracy) on held-out ``data``."""
        return evaluate_each([self.model], data, self.config.precision)

    def run_epoch(self, order: torch.Tensor, rates: Rates, progress: Callable[[int], None]) -> Results:
        """One epoch over ``order`` (its last partial batch dropped); ``progress`` hears the steps
        enqueued after each block (the host's count: no sync)."""
        lrs, momenta = (torch.tensor(r, device=self.lr.device) if r else None for r in rates)
        self.model.train()
        order = order[: self.steps * self.batch]
        self.loss_sum.zero_()
        self.correct.zero_()
        for start in range(0, self.steps, self.block):
            n = min(self.block, self.steps - start)  # the tail: fewer steps than a block
            rows = order[start * self.batch:(start + n) * self.batch]
            torch.index_select(self.data.x, 0, rows, out=self.block_x[:n].view(-1, 28, 28))
            torch.index_select(self.data.y, 0, rows, out=self.block_y[:n].view(-1))
            self.block_lr[:n].copy_(lrs[start:start + n])
            if self.cycles and momenta is not None:
                self.block_beta1[:n].copy_(momenta[start:start + n])
            if self.block_outliers is not None:
                drawn = torch.randint(len(self.outliers), (n * self.block_outliers.shape[1],),
                                      generator=self.outlier_draws).to(self.outliers.device)
                torch.index_select(self.outliers, 0, drawn, out=self.block_outliers[:n].view(-1, 28, 28))
            (self.graph if n == self.block else self.tail_graph).replay()
            self.loss_sum += self.block_loss[:n].sum()
            self.correct += self.block_hits[:n].sum()
            progress(start + n)
        return [(self.loss_sum.item() / self.steps, self.correct.item() / (self.steps * self.batch))]


class _GraphScaler:
    """fp16 loss scaling that a CUDA graph can hold: GradScaler's arithmetic, with the scale,
    the overflow flag and the growth counter kept on the device and no host sync. The fused
    optimizer reads ``found_inf`` and skips a step whose gradients overflowed."""

    def __init__(self, device: torch.device, scale: float = 2.0**16, growth: float = 2.0,
                 backoff: float = 0.5, interval: int = 2000) -> None:
        self.initial = scale
        self.scale_ = torch.full((), scale, device=device)
        self.inverse = torch.ones((), device=device)
        self.found_inf = torch.zeros((), device=device)
        self.growth_tracker = torch.zeros((), dtype=torch.int32, device=device)
        self.growth, self.backoff, self.interval = growth, backoff, interval

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.scale_

    def reset(self) -> None:
        self.scale_.fill_(self.initial)
        self.growth_tracker.zero_()

    def unscale(self, grads: list[torch.Tensor]) -> None:
        """Divide the gradients by the scale in place; ``found_inf`` says whether any overflowed."""
        self.found_inf.zero_()
        torch.reciprocal(self.scale_, out=self.inverse)
        torch._amp_foreach_non_finite_check_and_unscale_(grads, self.found_inf, self.inverse)

    def update(self) -> None:
        """Halve the scale after an overflow; double it after ``interval`` clean steps."""
        torch._amp_update_scale_(self.scale_, self.growth_tracker, self.found_inf, self.growth,
                                 self.backoff, self.interval)

