"""Let litert-torch's generative tools import without TensorFlow.

litert-torch 0.10.0 needs no TensorFlow except for one import in its generative utilities (`layers/lora.py`, the NPU
compiler): `from tensorflow.lite.python import schema_py_generated`. The same generated flatbuffer schema ships in
ai-edge-litert, so the benchmarks that run Google's own pipelines point that module name at it. quantlab itself never
imports this.
"""

from __future__ import annotations

import sys
import types


def install() -> None:
    """Call before importing litert-torch's generative modules."""
    # torch._dynamo probes importlib.util.find_spec("tensorflow") when first imported, which a bare module breaks:
    # import it before the stand-in exists.
    import torch._dynamo  # noqa: F401
    from ai_edge_litert import schema_py_generated

    for name in ("tensorflow", "tensorflow.lite", "tensorflow.lite.python"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["tensorflow.lite.python"].schema_py_generated = schema_py_generated
    sys.modules["tensorflow.lite.python.schema_py_generated"] = schema_py_generated
