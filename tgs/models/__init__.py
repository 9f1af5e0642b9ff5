"""Models: the registry (`create_model(name, **kw)`, `list_models()`), the seed U-Net, heads,
losses, the 101x101 geometry and checkpoints."""

from tgs.models.registry import (
    MODELS,
    SegModel,
    create_model,
    list_models,
    model_from_config,
    register,
)

__all__ = ["MODELS", "SegModel", "create_model", "list_models", "model_from_config", "register"]
