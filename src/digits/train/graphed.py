"""Training with CUDA graphs: whole optimizer steps recorded once and replayed.

A small CNN at batch 256 leaves an H100 idle most of the time: the CPU cannot launch
~150 kernels per step fast enough. Here a block of steps (forward, loss, backward, Adam
or SGD, accuracy counters, the learning rate of each step) is captured into one CUDA graph;
an epoch is a handful of replays. The arithmetic is that of the ordinary loop with two
differences, both documented: the last partial batch of an epoch is dropped (a graph has
fixed shapes), and the learning rate comes from a per-step table computed up front (so
``plateau`` is not available). The steps left over after the last whole block have a graph
of their own, so no step of an epoch runs eagerly.

The trainer is built once and can be reset to fresh weights in place, so repeated runs
(seeds of a benchmark, members of an ensemble) reuse the captured graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from digits.errors import DigitsError
from digits.train.augment import random_affine
from digits.train.config import TrainConfig
from digits.train.fit import TensorSet, autocast
from digits.train.schedule import build_schedule

GRAPH_STEPS = 16  # optimizer steps recorded per graph; an epoch replays it steps // 16 times


def schedule_table(config: TrainConfig, steps_per_epoch: int) -> list[float]:
    """The learning rate of every step of the run, as the eager loop's scheduler would set it."""
    if config.schedule == "plateau":
        raise DigitsError("CUDA graphs need a schedule known in advance; plateau depends on validation")
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
    schedule = build_schedule(config.schedule, probe, config.epochs, steps_per_epoch, **config.schedule_args)
    lrs = []
    for _ in range(config.epochs):
        for _ in range(steps_per_epoch):
            lrs.append(probe.param_groups[0]["lr"])
            probe.step()
            if schedule is not None:
                schedule.after_step()
        if schedule is not None:
            schedule.after_epoch(0.0)
    return lrs


class GraphedTrainer:
    """Trains ``model`` on ``data`` with captured CUDA graphs. ``reset(seed)`` starts over in place."""

    def __init__(self, model: nn.Module, data: TensorSet, config: TrainConfig) -> None:
        if data.x.device.type != "cuda":
            raise DigitsError("CUDA graphs need a CUDA device")
        if config.optimizer not in ("adam", "adamw", "sgd"):
            raise DigitsError(f"CUDA graphs support adam, adamw and sgd, not {config.optimizer}")
        self.model, self.data, self.config = model, data, config
        device = data.x.device
        # cuDNN must choose its kernels by timing them in the warm-up steps: a graph keeps the
        # kernel chosen at capture, and the untimed default was 4x slower for fast-cnn's conv.
        torch.backends.cudnn.benchmark = True
        self.batch = config.batch_size
        self.steps = len(data) // self.batch                                  # full batches only
        if self.steps < 1:
            raise DigitsError(f"CUDA graphs need at least one full batch of {self.batch} rows")
        self.block = min(GRAPH_STEPS, self.steps)
        lrs = schedule_table(config, self.steps)
        self.lrs = torch.tensor(lrs + [lrs[-1]] * self.block, device=device)  # padded for the last block
        self.lr = torch.tensor(config.lr, device=device)
        self.step_index = torch.zeros((), dtype=torch.long, device=device)
        self.x = torch.empty((self.steps * self.batch, 28, 28), dtype=torch.uint8, device=device)
        self.y = torch.empty(self.steps * self.batch, dtype=torch.long, device=device)
        self.offset = torch.zeros((), dtype=torch.long, device=device)        # first row of this block
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.optimizer = self._make_optimizer()
        self.graph = self._capture(self.block)
        tail = self.steps % self.block
        self.tail_graph = self._capture(tail) if tail else None

    def _make_optimizer(self) -> torch.optim.Optimizer:
        args = dict(self.config.optimizer_args)
        wd = self.config.weight_decay
        if self.config.optimizer == "sgd":
            return torch.optim.SGD(self.model.parameters(), lr=self.lr, momentum=args.pop("momentum", 0.9),
                                   weight_decay=wd, **args)
        cls = torch.optim.Adam if self.config.optimizer == "adam" else torch.optim.AdamW
        # fused: one kernel for the whole update (it is graph-safe and reads lr from the device).
        args.setdefault("fused", True)
        return cls(self.model.parameters(), lr=self.lr, betas=tuple(args.pop("betas", (0.9, 0.999))),
                   eps=args.pop("eps", 1e-7), weight_decay=wd, capturable=True, **args)

    def _one_step(self, i: int) -> None:
        # Rows [offset + i*B, offset + (i+1)*B) of this epoch's shuffled copy; offset lives on the GPU.
        rows = self.offset + i * self.batch + torch.arange(self.batch, device=self.x.device)
        x, y = self.x[rows], self.y[rows]
        if self.config.augment:  # random draws inside a graph use CUDA's graph-safe generator
            x = random_affine(x, **self.config.augment)
        # index_select, not lrs[t]: indexing with a 0-d tensor reads it on the host and breaks capture.
        self.lr.copy_(self.lrs.index_select(0, (self.step_index + i).view(1)).view(()))
        with autocast(x.device, self.config.precision):
            logits = self.model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.config.label_smoothing)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=False)
        self.loss_sum += loss.detach() * self.batch
        self.correct += (logits.detach().argmax(1) == y).sum()

    def _capture(self, steps: int) -> torch.cuda.CUDAGraph:
        """Record ``steps`` optimizer steps; the warm-up steps before it leave no trace."""
        saved = self._snapshot()
        self.model.train()
        self.x.zero_()
        self.y.zero_()
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
            for p in self.model.parameters():
                if p.grad is not None:
                    p.grad.zero_()

    def reset(self, weights: dict[str, torch.Tensor]) -> None:
        """Load fresh weights in place and zero the optimizer state: a new run, same graph."""
        with torch.no_grad():
            for name, tensor in self.model.state_dict().items():
                tensor.copy_(weights[name.removeprefix("_orig_mod.")])  # torch.compile's wrapper
            for state in self.optimizer.state.values():
                for value in state.values():
                    if torch.is_tensor(value):
                        value.zero_()
            for p in self.model.parameters():
                if p.grad is not None:
                    p.grad.zero_()
        self.step_index.zero_()

    def run_epoch(self, generator: torch.Generator) -> tuple[float, float, float]:
        """One epoch in a new shuffled order; returns (mean loss, accuracy, last learning rate)."""
        self.model.train()
        order = torch.randperm(len(self.data), generator=generator)[: self.steps * self.batch]
        order = order.to(self.x.device)
        self.x.copy_(self.data.x[order])
        self.y.copy_(self.data.y[order])
        self.loss_sum.zero_()
        self.correct.zero_()
        self.offset.zero_()
        for start in range(0, self.steps, self.block):
            last = start + self.block > self.steps  # the tail: fewer steps than a block
            (self.tail_graph if last else self.graph).replay()
            done = self.steps - start if last else self.block
            self.offset += done * self.batch
            self.step_index += done
        seen = self.steps * self.batch
        last_lr = float(self.lrs[int(self.step_index) - 1])
        return self.loss_sum.item() / seen, self.correct.item() / seen, last_lr

