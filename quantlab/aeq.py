"""The one adapter between quantlab and ai-edge-quantizer's internals: how it builds LiteRT interpreters.

ai-edge-quantizer 0.10 builds every interpreter (`tfl_interpreter_utils.create_tfl_interpreter`) by copying the whole
model into a Python bytes object, with XNNPACK, which packs every weight once per signature, and 16 threads whatever
the machine has. For the 1B's 4 GB float main that is 4 GB of copy plus 8 GB of packed weights, also where nothing is
run: `Quantizer.quantize` builds one only to list tensor names (peak 15.8 GB for a quantize that otherwise needs
1.5 GB), the K/V range alignment one only to look up signatures. Inside `interpreters_from_file` they are built from
the file instead (memory-mapped), with this machine's cores, and without XNNPACK unless asked for.

ai-edge-quantizer 0.10 offers no hook for this (its Calibrator forbids subclasses), so the builder function of its
`tfl_interpreter_utils` module is swapped for the duration of a `with` block and put back after. Remove this module
when ai-edge-quantizer lets a caller pass a model path or an interpreter factory.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Iterator

from quantlab.procmon import cores

_LOCK = threading.Lock()  # one swap at a time within a process


@contextlib.contextmanager
def interpreters_from_file(xnnpack: bool = True, buffer_of: Path | None = None) -> Iterator[None]:
    """Build ai-edge-quantizer's interpreters from files inside this block.

    xnnpack: keep XNNPACK where ai-edge-quantizer asks for it (True for a calibrator, which runs the model; False where
    an interpreter is only read). buffer_of: the file whose contents ai-edge-quantizer holds as a buffer (a Quantizer's
    float model); interpreters asked for on a buffer are then built from this file.
    """
    from ai_edge_litert import interpreter as tfl
    from ai_edge_quantizer.utils import tfl_interpreter_utils

    original = tfl_interpreter_utils.create_tfl_interpreter

    def create(tflite_model, allocate_tensors=True, use_xnnpack=True, num_threads=16, preserve_all_tensors=True,
               disable_delegate_node_fusion=False, force_delegate_node_profiling=False):
        path = tflite_model if isinstance(tflite_model, (str, Path)) else buffer_of
        if path is None:
            return original(tflite_model, allocate_tensors, use_xnnpack, num_threads, preserve_all_tensors,
                            disable_delegate_node_fusion, force_delegate_node_profiling)
        resolver = (tfl.OpResolverType.BUILTIN if use_xnnpack and xnnpack
                    else tfl.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interp = tfl.Interpreter(
            model_path=str(path), num_threads=cores(), experimental_op_resolver_type=resolver,
            experimental_preserve_all_tensors=preserve_all_tensors,
            experimental_disable_delegate_node_fusion=disable_delegate_node_fusion,
            experimental_force_delegate_node_profiling=force_delegate_node_profiling,
        )
        if allocate_tensors:
            interp.allocate_tensors()
        return interp

    with _LOCK:
        tfl_interpreter_utils.create_tfl_interpreter = create
        try:
            yield
        finally:
            tfl_interpreter_utils.create_tfl_interpreter = original


def signature_keys(path: Path) -> list[str]:
    """The signature names of a .tflite file, read from its flatbuffer (no interpreter)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    return [sd.signatureKey.decode() for sd in (model.signatureDefs or [])]


class _ShallowOnDeepcopy(list):
    """A subgraph's operator list that deep-copies as a plain shallow copy (see `alignment_utils`)."""

    def __deepcopy__(self, memo) -> list:
        return list(self)


def alignment_utils(main_path: Path):
    """ai-edge-quantizer's `CalibrationQsvAlignmentUtils` for `main_path`, built from the file without XNNPACK.

    Each name it looks up deep-copies every operator of the signature's subgraph, only to pop them from the copy one by
    one; the operators themselves are never changed, so a shallow copy finds the same tensors (the 270M's K/V
    alignment: 92 deep copies, ~11 s of its calibration)."""
    from ai_edge_quantizer.utils import calibration_utils

    with interpreters_from_file(xnnpack=False):
        utils = calibration_utils.CalibrationQsvAlignmentUtils(str(main_path))
    for sg in utils._flatbuffer_object.subgraphs:  # noqa: SLF001 - see the docstring
        sg.operators = _ShallowOnDeepcopy(sg.operators)
    return utils
