"""PyTorch Gemma3 → FP32 LiteRT models in the NPU layout (embedder + stateless main with prefill/decode)."""

from quantlab.layout import ExportConfig
from quantlab.export.exporter import export_model

__all__ = ["ExportConfig", "export_model"]
