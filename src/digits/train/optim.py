"""Optimizers by name, with Keras' defaults where the tutorial relied on them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from digits.errors import DigitsError


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float,
                    **args: Any) -> torch.optim.Optimizer:
    """Create optimizer ``name`` (sgd, rmsprop, adam, adamw).

    RMSprop follows Keras (``rho=0.9``, ``epsilon=1e-7``, no momentum): the update is
    ``w -= lr * g / (sqrt(v) + eps)`` with ``v = rho * v + (1 - rho) * g**2``, which is
    PyTorch's RMSprop with ``alpha=rho``.
    """
    name = name.lower()
    params = list(params)
    if name in ("adam", "adamw") and params and params[0].is_cuda:
        args.setdefault("fused", True)  # one kernel for the whole update instead of a dozen
    try:
        if name == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr, alpha=args.pop("rho", 0.9),
                                       eps=args.pop("eps", 1e-7), **args)
        if name == "adam":
            return torch.optim.Adam(params, lr=lr, betas=tuple(args.pop("betas", (0.9, 0.999))),
                                    eps=args.pop("eps", 1e-7), **args)
        if name == "adamw":
            return torch.optim.AdamW(params, lr=lr, betas=tuple(args.pop("betas", (0.9, 0.999))),
                                     eps=args.pop("eps", 1e-7), **args)
        if name == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=args.pop("momentum", 0.9), **args)
    except TypeError as exc:
        raise DigitsError(f"optimizer {name!r}: {exc}") from None
    raise DigitsError(f"unknown optimizer {name!r}; known: sgd, rmsprop, adam, adamw")
