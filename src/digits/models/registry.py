"""The model registry: small typed builders, looked up by name.

``@register_model`` records a builder with a one-line description and its stated
target; ``create_model(name, **overrides)`` builds it (``None`` overrides are ignored, so
CLI flags that were not given fall back to the builder's defaults).
"""

from __future__ import annotations

import fnmatch
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from digits.errors import ModelError, did_you_mean
from digits.limits import MAX_PARAMETERS
from digits.models.layers import Classifier


@dataclass(frozen=True)
class ModelInfo:
    """A registered model: its builder and what it is for."""

    name: str
    builder: Callable[..., nn.Module]
    description: str
    target: str
    mean: float = 0.0  # input normalisation after scaling pixels to [0, 1]
    std: float = 1.0
    defaults: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelInfo] = {}



def register_model(name: str, *, description: str, target: str, mean: float = 0.0,
                   std: float = 1.0) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``builder`` under ``name``. The builder returns a network that maps
    normalised images (N, 1, 28, 28) to 10 logits."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        defaults = {k: p.default for k, p in inspect.signature(builder).parameters.items()
                    if p.default is not inspect.Parameter.empty}
        _REGISTRY[name] = ModelInfo(name, builder, description, target, mean, std, defaults)
        return builder

    return decorate


def get_model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``, or a ModelError listing the known names."""
    if name not in _REGISTRY:
        raise ModelError(f"unknown model {name!r}{did_you_mean(name, _REGISTRY)}; "
                         f"known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_models(pattern: str = "*") -> list[ModelInfo]:
    """Registered models whose name matches the shell-style ``pattern``, sorted by name; a
    plain word (no ``*?[``) matches anywhere in the name, as timm's ``list_models`` does with
    wildcards: ``cnn`` is ``*cnn*``."""
    if not any(ch in pattern for ch in "*?["):
        pattern = f"*{pattern}*"
    return [info for name, info in sorted(_REGISTRY.items()) if fnmatch.fnmatch(name, pattern)]


def resolve_model_args(name: str, **overrides: Any) -> dict[str, Any]:
    """The builder's full argument set: its defaults updated by the non-None overrides, each
    of the type its default has (a ModelError naming the argument otherwise)."""
    info = get_model_info(name)
    unknown = sorted(k for k, v in overrides.items() if v is not None and k not in info.defaults)
    if unknown:
        raise ModelError(f"model {name!r} takes no argument {', '.join(unknown)}; "
                         f"it takes: {', '.join(info.defaults) or 'none'}")
    for key, value in overrides.items():
        if value is not None:
            _check_type(name, key, value, info.defaults[key])
    args = dict(info.defaults)
    args.update({k: _jsonable(v) for k, v in overrides.items() if v is not None})
    return {k: _jsonable(v) for k, v in args.items()}


def _check_type(model: str, key: str, value: Any, default: Any) -> None:
    """Refuse ``value`` for argument ``key`` when it is not of its default's kind, before the
    builder fails on it with a message about something else (``int('a')``)."""
    kinds = {bool: ("true or false", (bool,)), int: ("an integer", (int,)), float: ("a number", (int, float)),
             str: ("a string", (str,)), list: ("a list", (list, tuple)), tuple: ("a list", (list, tuple))}
    expected = kinds.get(type(default))
    if expected is None:
        return  # None or another kind of default: the builder decides
    words, accepted = expected
    wrong = not isinstance(value, accepted) or (isinstance(value, bool) and type(default) is not bool)
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)) and default:
        inner = type(default[0])
        wrong = wrong or any(not isinstance(v, inner) or isinstance(v, bool) for v in value)
        words = f"a list of {kinds[inner][0].removeprefix('an ').removeprefix('a ')}s" if inner in kinds else words
    if wrong:
        raise ModelError(f"model {model!r}: argument {key} must be {words} (default {json.dumps(default)}), "
                         f"got {json.dumps(value)}")


def create_model(name: str, **overrides: Any) -> Classifier:
    """Build model ``name``: pixel normalisation followed by the registered network.

    The result takes uint8 or float pixels 0-255 of shape (N, 28, 28) or (N, 1, 28, 28).

    >>> model = create_model("tutorial-mlp")
    >>> count_parameters(model)
    25450
    """
    info = get_model_info(name)
    args = resolve_model_args(name, **overrides)
    # Built first on the meta device (shapes only, no memory), so arguments that ask for an
    # enormous model are refused with a message instead of failing in the allocator.
    with torch.device("meta"):
        size = count_parameters(_build(info, args))
    if size > MAX_PARAMETERS:
        raise ModelError(f"model {name!r} with {_shown(args)} would have {size:,} parameters, more "
                         f"than the {MAX_PARAMETERS:,} allowed")
    return Classifier(_build(info, args), mean=info.mean, std=info.std)


def _build(info: ModelInfo, args: dict[str, Any]) -> nn.Module:
    try:
        return info.builder(**args)
    except (TypeError, ValueError, OverflowError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"model {info.name!r} cannot be built with {_shown(args)}: {first}") from None


def _shown(args: dict[str, Any]) -> str:
    text = repr(args)  # arguments from a damaged model.json can be any size
    return text if len(text) <= 120 else text[:117] + "..."


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _jsonable(value: Any) -> Any:
    # Model arguments go into model.json, so tuples become lists and back via the builder.
    return list(value) if isinstance(value, tuple) else value
