"""Step engines: the optimizer steps of one epoch, for the one loop in ``digits.train.fit``,
over the order it gives, for one model or several side by side on the same batches. Each says
positively what it handles (``supports``); the loop takes the first that does (``ENGINES``
there). This one, the general engine, handles everything: autograd and torch.optim."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from digits.data.normalise import normalise
from digits.data.tensors import TensorSet
from digits.errors import DigitsError
from digits.precision import autocast, grad_scaler
from digits.train.augment import augment_batch
from digits.train.config import TrainConfig
from digits.train.optim import build_optimizer
from digits.train.schedule import Rates, set_rate

# Settings the loop carries out itself, whatever the engine (the schedule too: engines only set
# each step's rate from the loop's table).
LOOP_SETTINGS = frozenset({"model", "model_args", "epochs", "batch_size", "lr", "schedule", "schedule_args",
                           "val_split", "shuffle", "seed", "device", "early_stopping", "monitor", "restore_best",
                           "normalise"})  # the loop normalises the rows before any engine sees them
Claims = dict[str, Callable[[Any, TrainConfig], bool]]  # setting -> which of its values an engine handles


def claims(config: TrainConfig, handled: Claims) -> bool:
    """Whether every setting of ``config`` is the loop's or one in ``handled`` with a value it takes;
    a setting added later is handled by nobody but the general engine until an engine claims it."""
    return all(f.name in LOOP_SETTINGS or (f.name in handled and handled[f.name](getattr(config, f.name), config))
               for f in dataclasses.fields(config))


class EngineUnavailable(RuntimeError):
    """This engine cannot run these models after all (a CUDA graph that fails to capture): take the next."""


Results = list[tuple[float, float]]  # per model: (mean loss, accuracy), of an epoch's training or held-out rows


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorSet, batch_size: int = 2048,
             precision: str = "fp32") -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on ``data``."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(data), batch_size):
        x, y = data.x[start:start + batch_size], data.y[start:start + batch_size]
        with autocast(x.device, precision):
            logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += int((logits.argmax(1) == y).sum())
    return loss_sum / max(len(data), 1), correct / max(len(data), 1)


def outlier_bank(data: TensorSet, config: TrainConfig) -> torch.Tensor | None:
    """The pictures of outlier exposure as ``data`` holds its images (uint8 on its device), or
    None without it. Each step draws a quarter batch of them, from a generator seeded
    ``config.seed + 1`` (:func:`outlier_draws`), and adds ``outlier_loss`` of their logits."""
    if not config.outlier_exposure:
        return None
    if tuple(data.x.shape[1:]) != (28, 28):
        raise DigitsError(f"outlier exposure needs 28x28 images, not rows shaped {tuple(data.x.shape[1:])}")
    from digits.data.outliers import outlier_pictures  # Pillow's fonts: only for the runs that ask

    # One bank for every seed (the draws from it follow the seed): drawing a bank takes 5-20 s, and
    # an ensemble's members would each draw their own, 15 of them on a fresh Kaggle or Colab machine.
    return torch.from_numpy(normalise(outlier_pictures(), config.normalise)).to(data.x.device)


def outlier_draws(config: TrainConfig) -> torch.Generator:
    """The host generator that picks each step's outlier pictures: its own, so that the digits'
    order and augmentation draw the same numbers with and without outlier exposure."""
    return torch.Generator().manual_seed(config.seed + 1)


def outlier_count(batch: int) -> int:
    """How many outlier pictures go with a batch of ``batch`` digits: a quarter batch."""
    return max(1, batch // 4)


def outlier_loss(doubt: torch.Tensor) -> torch.Tensor:
    """Outlier exposure's loss on the logits of the outlier pictures: cross-entropy against the
    uniform distribution (Hendrycks et al. 2019), up to a constant."""
    return (torch.logsumexp(doubt, 1) - doubt.mean(1)).mean()


def evaluate_each(models: Sequence[nn.Module], data: TensorSet, precision: str) -> Results:
    """``evaluate`` of each model on ``data``: an engine's ``evaluate`` unless it has a faster one."""
    return [evaluate(model, data, precision=precision) for model in models]


class AutogradEngine:
    """The general engine: forward, ``loss.backward()`` and ``optimizer.step()``."""

    checkpoints = True  # the loop may save and resume its state, and the engine's own (state_dict)

    @staticmethod
    def supports(models: Sequence[nn.Module], config: TrainConfig, device: torch.device) -> bool:
        return True

    def __init__(self, models: Sequence[nn.Module], data: TensorSet, config: TrainConfig) -> None:
        self.models, self.data, self.config = list(models), data, config
        self.optimizers = [build_optimizer(config.optimizer, m.parameters(), config.lr,
                                           weight_decay=config.weight_decay, **config.optimizer_args) for m in models]
        self.forwards = [torch.compile(m) if config.compile else m for m in models]
        self.scalers = [grad_scaler(data.x.device, config.precision) for _ in models]  # fp16: loss scaling
        self.steps = math.ceil(len(data) / config.batch_size)
        self.outliers = outlier_bank(data, config)
        self.outlier_draws = outlier_draws(config)
        self.batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for n in models for m in n.modules())

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of this engine beside the model and its optimizer, so that a
        resumed run goes on as the uninterrupted one would: where the outlier draws have got to
        and, under fp16, the first model's loss scale (overflows halve it, clean steps grow it)."""
        state: dict[str, Any] = {"outlier_draws": self.outlier_draws.get_state()}
        if self.scalers[0] is not None:
            state["scaler"] = self.scalers[0].state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state_dict` gave (a checkpoint from before it kept this: nothing)."""
        if "outlier_draws" in state:
            self.outlier_draws.set_state(state["outlier_draws"])
        if "scaler" in state and self.scalers[0] is not None:
            self.scalers[0].load_state_dict(state["scaler"])

    def run_epoch(self, order: torch.Tensor, rates: Rates, progress: Callable[[int], None]) -> Results:
        """One pass over the rows in ``order``; ``progress`` hears the steps done so far."""
        (lrs, momenta), config, data = rates, self.config, self.data
        for model in self.models:
            model.train()
        # Accumulate on the device: a .item() here would sync every step.
        loss_sums = [torch.zeros((), device=data.x.device) for _ in self.models]
        correct = [torch.zeros((), device=data.x.device, dtype=torch.int64) for _ in self.models]
        seen = 0
        for step, start in enumerate(range(0, len(order), config.batch_size)):
            idx = order[start:start + config.batch_size]
            if len(idx) < 2 and self.batch_norm:
                continue  # batch norm cannot train on a single example
            x, y = data.x[idx], data.y[idx]
            if self.outliers is not None:  # a quarter batch of non-digits after the digits, augmented alike
                drawn = torch.randint(len(self.outliers), (outlier_count(len(idx)),), generator=self.outlier_draws)
                x = torch.cat([x, self.outliers[drawn.to(x.device)]])
            if config.augment:
                x = augment_batch(x, **config.augment)
            for k, (forward, optimizer, scaler) in enumerate(zip(self.forwards, self.optimizers, self.scalers)):
                set_rate(optimizer.param_groups[0], lrs[step], momenta[step] if momenta else None)
                with autocast(data.x.device, config.precision):
                    logits = forward(x).float()
                digits_loss = loss = F.cross_entropy(logits[:len(y)], y, label_smoothing=config.label_smoothing)
                if self.outliers is not None:
                    loss = loss + config.outlier_exposure * outlier_loss(logits[len(y):])
                logits = logits[:len(y)]
                optimizer.zero_grad(set_to_none=True)
                if scaler is None:
                    loss.backward()
                    optimizer.step()
                else:  # fp16: skips the step (and lowers the scale) when a gradient overflowed
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                loss_sums[k] += digits_loss.detach() * len(idx)  # the history's loss: the digits' own
                correct[k] += (logits.detach().argmax(1) == y).sum()
            seen += len(idx)
            progress(step + 1)
        return [(s.item() / max(seen, 1), c.item() / max(seen, 1)) for s, c in zip(loss_sums, correct)]

    def evaluate(self, data: TensorSet) -> Results:
        """Each model's (mean cross-entropy, accuracy) on held-out ``data``."""
        return evaluate_each(self.models, data, self.config.precision)
