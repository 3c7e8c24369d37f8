"""Any3DAvatar: structured Plücker-aware scaffold, one-step denoising, auxiliary appearance head."""
from .model import Any3DAvatar, InferenceAny3DAvatar, ModelConfig

__all__ = ["Any3DAvatar", "InferenceAny3DAvatar", "ModelConfig"]
