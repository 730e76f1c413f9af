"""One .tflite model under the LiteRT interpreter, with quantized I/O handled on the host.

Inputs are given and outputs returned as float32 (or int32 token ids); where the model's tensor is int8/int16, the host
quantizes with that tensor's own scale and zero point. Tensors the host only copies between calls (KV caches) can be
passed through `raw` in the model's own dtype, so they are never requantized.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantlab.errors import UserError
from quantlab.procmon import cores


@dataclass(frozen=True)
class TensorSpec:
    """A signature input or output: name, shape, dtype and (for integer tensors) quantization."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and np.issubdtype(self.dtype, np.integer) and self.dtype != np.int32

    def quantize(self, x: np.ndarray) -> np.ndarray:
        if not self.quantized:
            return np.asarray(x, dtype=self.dtype)
        info = np.iinfo(self.dtype)
        q = np.round(np.asarray(x, np.float32) / np.float32(self.scale)) + self.zero_point
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        if not self.quantized:
            return np.asarray(q, dtype=np.float32)
        return (q.astype(np.float32) - np.float32(self.zero_point)) * np.float32(self.scale)

    def convert(self, q: np.ndarray, to: "TensorSpec") -> np.ndarray:
        """`q` (in this tensor's type) in the type of `to`; unchanged where both have the same parameters (the host
        then copies integers, as for K/V caches and slices aligned across signatures)."""
        if (self.dtype, self.scale, self.zero_point) == (to.dtype, to.scale, to.zero_point):
            return q
        return to.quantize(self.dequantize(q))


def _spec(name: str, d: dict) -> TensorSpec:
    params = d.get("quantization_parameters") or {}
    scales, zps = params.get("scales", []), params.get("zero_points", [])
    scale = float(scales[0]) if len(scales) == 1 else (0.0 if len(scales) == 0 else float("nan"))
    zp = int(zps[0]) if len(zps) else 0
    if not len(scales):
        scale, zp = d.get("quantization", (0.0, 0))
    return TensorSpec(name, tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]), float(scale), int(zp))


class LiteRTModel:
    """A LiteRT model with named signatures. Choose `num_threads` = the cores you want it to use (None: all this process
    may run on)."""

    def __init__(self, path: Path, num_threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path} does not exist; run `quantlab export` (or quantize) to create it")
        try:
            # None must become a count: LiteRT's own default is one thread (measured: 270M FP32 prefill 291 tok/s
            # with None or 1, 485 with 2 on this 2-core machine).
            self.num_threads = num_threads or cores()
            self.interpreter = Interpreter(model_path=str(self.path), num_threads=self.num_threads)
        except (ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{self.path} is not a valid LiteRT model ({first}); re-create it") from None
        self._runners = {}
        self.inputs: dict[str, dict[str, TensorSpec]] = {}
        self.outputs: dict[str, dict[str, TensorSpec]] = {}
        for sig in self.interpreter.get_signature_list():
            runner = self.interpreter.get_signature_runner(sig)
            self._runners[sig] = runner
            self.inputs[sig] = {n: _spec(n, d) for n, d in runner.get_input_details().items()}
            self.outputs[sig] = {n: _spec(n, d) for n, d in runner.get_output_details().items()}

    @property
    def signatures(self) -> list[str]:
        return list(self._runners)

    def run(self, sig: str, values: dict[str, np.ndarray], raw: dict[str, np.ndarray] | None = None,
            raw_outputs: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
        """Run signature `sig`. `values` are float/int32 and get quantized; `raw` are passed as they are.

        Outputs named in `raw_outputs` come back in the model's dtype; the rest are dequantized to float32.
        """
        specs = self.inputs[sig]
        feed = {n: specs[n].quantize(v) for n, v in values.items()}
        if raw:
            feed.update(raw)
        out = self._runners[sig](**feed)
        res = {}
        for n, v in out.items():
            res[n] = v if n in raw_outputs else self.outputs[sig][n].dequantize(v)
        return res
