"""CPU renderers of AnyHead assets."""
from .raycast import HeadRenderer, Lighting, RenderOutput

__all__ = ["HeadRenderer", "Lighting", "RenderOutput"]
