"""A .tflite file as LiteRT's flatbuffer object tree, for the rewrites quantlab makes (bundled embedder, scoring copy).

`read_model` hands a buffer that ai-edge-quantizer stored past the flatbuffer over as `bytes`, which flatbuffers then
packs one byte per Python call when the model is written back (~130 s for the 270M's int8 embedding table). Every
buffer is handed over here as a numpy array instead: written in one copy, byte for byte the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read(path: Path):
    """The model at `path` as a `ModelT`, every buffer's data a uint8 numpy array."""
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    model = fbu.read_model(str(path))
    for buf in model.buffers:
        if buf.data is not None and not isinstance(buf.data, np.ndarray):
            buf.data = np.frombuffer(buf.data, dtype=np.uint8)
    return model


def write(model, path: Path) -> Path:
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    fbu.write_model(model, str(path))
    return Path(path)
