"""Model sources: where a Gemma3 text model comes from (`--model`)."""

from quantlab.models.loaded import LoadedModel
from quantlab.models.registry import available_names, load_model

__all__ = ["LoadedModel", "available_names", "load_model"]
