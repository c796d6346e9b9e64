"""Model registry and architectures."""

from digits.models.registry import count_parameters, create_model, get_model_info, list_models, register_model

__all__ = ["count_parameters", "create_model", "get_model_info", "list_models", "register_model"]
