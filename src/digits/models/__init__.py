"""Model registry and architectures.

The registry is a leaf that the architecture modules register into: importing this package
(which any import of ``digits.models.*`` does first) imports them, so every built-in model is
registered before the registry is asked.
"""

from digits.models import cnn, cnn_small, mlp  # noqa: F401  (their @register_model decorators run)
from digits.models.registry import count_parameters, create_model, get_model_info, list_models, register_model

__all__ = ["count_parameters", "create_model", "get_model_info", "list_models", "register_model"]
