"""Compile a main for several SoCs and record the results in its artifact folder's manifest (when it has one)."""

from __future__ import annotations

from pathlib import Path

from quantlab import artifacts, manifest
from quantlab.compile.compiler import CompileFailed, CompileResult, compile_model
from quantlab.compile.levels import SHIP_LEVEL
from quantlab.compile.socs import resolve_soc
from quantlab.manifest import CompileRecord


def compile_for_socs(model: Path, socs: list[str], out: Path | None = None, overwrite: bool = False,
                     weight_sharing: bool = True, opt_level: str = SHIP_LEVEL) -> list[CompileResult]:
    """Compile `model` for each SoC (names checked before any work starts, the level by compile_model before the first
    compile); a failure raises CompileFailed after the earlier SoCs' results are recorded."""
    socs = [resolve_soc(s) for s in socs]
    results = []
    for soc in socs:
        try:
            res = compile_model(model, soc, out or artifacts.aot_path(model, soc), weight_sharing, overwrite,
                                opt_level=opt_level)
        except CompileFailed as exc:
            record(model, CompileRecord(soc=soc, failed=True, errors=exc.errors[:20]), None)
            raise
        record(model, res.record(), res.path)
        results.append(res)
    return results


def record(model: Path, rec: CompileRecord, compiled: Path | None) -> None:
    """Add a compile result (and the compiled file) to the manifest of the folder `model` lives in, if that folder is an
    artifact set holding `model`."""
    folder = Path(model).parent
    if not (folder / manifest.MANIFEST).is_file() or (compiled is not None and compiled.parent != folder):
        return
    with manifest.edit(folder) as m:
        variant = next((k for k, a in m.artifacts.items() if a.role == "main" and a.path == Path(model).name), None)
        if variant is None:
            return
        m.artifacts[variant].compiled[rec.soc] = rec
        key = artifacts.compiled_key(variant, rec.soc)
        if compiled is None:
            m.artifacts.pop(key, None)
        else:
            m.artifacts[key] = manifest.Artifact.of(compiled, "compiled", m.artifacts[variant].scheme,
                                                    source=variant, soc=rec.soc)
