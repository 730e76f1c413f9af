"""Compile a main for several SoCs and record the results in its artifact folder's manifest (when it has one)."""

from __future__ import annotations

from pathlib import Path

from quantlab import manifest
from quantlab.compile.compiler import CompileResult, compile_model
from quantlab.compile.socs import resolve_soc


def compiled_path(model: Path, soc: str) -> Path:
    return model.with_name(f"{model.stem}_aot_{soc.lower()}.tflite")


def compile_for_socs(model: Path, socs: list[str], out: Path | None = None, overwrite: bool = False,
                     weight_sharing: bool = True) -> list[CompileResult]:
    """Compile `model` for each SoC (names checked before any work starts)."""
    socs = [resolve_soc(s) for s in socs]
    results = []
    for soc in socs:
        res = compile_model(model, soc, out or compiled_path(model, soc), weight_sharing, overwrite)
        _record(model, res)
        results.append(res)
    return results


def _record(model: Path, res: CompileResult) -> None:
    """Add the compiled file to the manifest of the folder `model` lives in, if that folder is an artifact set."""
    folder = model.parent
    if not (folder / manifest.MANIFEST).is_file() or res.path.parent != folder:
        return
    data = manifest.load(folder)
    variant = next((k for k, a in data["artifacts"].items() if a.get("path") == model.name), model.stem)
    key = f"{variant}_aot_{res.soc.lower()}"
    data["artifacts"][key] = manifest.artifact_record(res.path, role="compiled", source_variant=variant,
                                                      **res.record())
    if variant in data["artifacts"]:  # the report's NPU table reads coverage from the variant's row
        data["artifacts"][variant][f"npu_{res.soc.lower()}"] = res.record()
    manifest.save(folder, data)
