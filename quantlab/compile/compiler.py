"""`quantlab compile`: AOT-compile a main .tflite for Snapdragon NPUs with LiteRT's Qualcomm compiler plugin.

Runs LiteRT's `apply_plugin_main` tool directly (as litert-torch's own NPU compiler does) so that quantlab controls the
plugin's flags and keeps its whole log: the partition statistics and, for every op the plugin leaves on the CPU, the
QNN validator's own message. Weight sharing (`qualcomm_enable_weight_sharing`) lets prefill and decode share one copy
of the weights in the QNN context: without it every signature stores its own.
The QNN graph optimization level is compile/levels.py's.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from quantlab.atomic import atomic_path, check_writable
from quantlab.check.graph import read_ops
from quantlab.compile.kept import KeptCompiles, compile_key
from quantlab.compile.levels import SHIP_LEVEL, check_level
from quantlab.compile.log_parse import RejectedOp, parse_log
from quantlab.compile.qnn_libs import library_path
from quantlab.compile.socs import resolve_soc
from quantlab.errors import UserError
from quantlab.manifest import CompileRecord
from quantlab.procmon import run_measured

DISPATCH_OP = "DISPATCH_OP"
logger = logging.getLogger(__name__)


class CompileFailed(Exception):
    """The plugin produced no model; `errors` holds the compiler's own messages."""

    def __init__(self, soc: str, errors: list[str], log_tail: str) -> None:
        self.soc, self.errors, self.log_tail = soc, errors, log_tail
        first = errors[0] if errors else log_tail.strip().splitlines()[-1:] or ["no message"]
        super().__init__(f"QNN compile for {soc} failed: {first if isinstance(first, str) else first[0]}")


@dataclass
class CompileResult:
    soc: str
    path: Path
    bytes: int
    input_bytes: int
    seconds: float
    peak_rss_mb: float
    weight_sharing: bool
    opt_level: str = SHIP_LEVEL
    coverage: dict[str, dict] = field(default_factory=dict)  # signature → ops offloaded / total / partitions
    rejected: list[RejectedOp] = field(default_factory=list)
    dispatch_ops: int = 0
    reused: bool = False  # taken from the search's kept compiles (seconds and peak memory are that compile's)

    @property
    def fully_offloaded(self) -> bool:
        return all(c["ops_offloaded"] == c["ops_total"] for c in self.coverage.values())

    def record(self) -> CompileRecord:
        return CompileRecord(
            soc=self.soc, bytes=self.bytes, input_bytes=self.input_bytes, seconds=round(self.seconds, 1),
            peak_rss_mb=round(self.peak_rss_mb, 1), weight_sharing=self.weight_sharing, opt_level=self.opt_level,
            coverage=self.coverage,
            dispatch_ops=self.dispatch_ops, rejected=[r.as_dict() for r in self.rejected], reused=self.reused)


def _plugin_paths() -> tuple[str, str]:
    from ai_edge_litert.aot.core import common

    plugin = common.get_resource(Path("vendors/qualcomm/compiler/libLiteRtCompilerPlugin_Qualcomm.so"))
    binary = common.get_resource(Path("tools/apply_plugin_main"))
    return str(binary), os.path.dirname(plugin)


def compile_model(model: Path, soc: str, out: Path, weight_sharing: bool = True, overwrite: bool = False,
                  log_path: Path | None = None, reuse_kept: bool = True, opt_level: str = SHIP_LEVEL) -> CompileResult:
    """Compile `model` for `soc` into `out`. Choose weight_sharing=False only to measure what it saves, and an
    `opt_level` other than O3 (levels.py) only to check coverage quickly. A compiled file the search kept for these
    exact bytes and options (kept.py) is moved to `out` instead, unless `reuse_kept` is False or a log is asked for."""
    from ai_edge_litert.aot.core import common

    model, out = Path(model), Path(out)
    soc = resolve_soc(soc)
    check_level(opt_level)
    if not model.is_file():
        raise UserError(f"{model} does not exist; pass a .tflite main (e.g. DIR/<name>_main_int8.tflite)")
    read_ops(model)  # a corrupt file is a one-line UserError here, not a plugin crash
    check_writable(out, overwrite)
    if reuse_kept and log_path is None:
        kept = KeptCompiles(model.parent)
        rec = kept.take(compile_key(model, soc, weight_sharing, opt_level), out) if kept.dir.is_dir() else None
        if rec is not None:
            logger.info("%s for %s: the search's compiled file of the same bytes, not compiled again", model.name, soc)
            return CompileResult(
                soc=soc, path=out, bytes=out.stat().st_size, input_bytes=model.stat().st_size,
                seconds=rec["seconds"], peak_rss_mb=rec["peak_rss_mb"], weight_sharing=weight_sharing,
                opt_level=opt_level,
                coverage=rec["coverage"], rejected=[RejectedOp(**r) for r in rec["rejected"]],
                dispatch_ops=rec["dispatch_ops"], reused=True)
    binary, plugin_dir = _plugin_paths()
    env = dict(os.environ, LD_LIBRARY_PATH=f"{library_path()}:{common.construct_ld_library_path()}")
    with atomic_path(out) as tmp:
        cmd = [binary, "--cmd=apply", f"--model={model}", f"--o={tmp}", "--soc_manufacturer=Qualcomm",
               f"--soc_model={soc}", "--err=--", f"--libs={plugin_dir}",
               f"--qualcomm_enable_weight_sharing={'true' if weight_sharing else 'false'}",
               f"--qualcomm_optimization_level={opt_level}"]
        rc, seconds, peak_mb, log = run_measured(cmd, env=env)
        if log_path is not None:
            log_path.write_text(log)
        coverage, rejected, errors = parse_log(log)
        if rc != 0 or not tmp.is_file() or not common.is_tflite(tmp):
            raise CompileFailed(soc, errors, log[-2000:])
    sigs = _subgraph_signatures(model)
    ops = read_ops(out)
    return CompileResult(
        soc=soc, path=out, bytes=out.stat().st_size, input_bytes=model.stat().st_size, seconds=seconds,
        peak_rss_mb=peak_mb, weight_sharing=weight_sharing, opt_level=opt_level,
        coverage={sigs.get(c.subgraph, f"subgraph_{c.subgraph}"): {
            "ops_offloaded": c.ops_offloaded, "ops_total": c.ops_total, "partitions": c.partitions}
            for c in coverage},
        rejected=[_named(r, sigs) for r in rejected],
        dispatch_ops=sum(1 for o in ops if o.name == DISPATCH_OP),
    )


def _subgraph_signatures(path: Path) -> dict[int, str]:
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    return {sd.subgraphIndex: sd.signatureKey.decode() for sd in (model.signatureDefs or [])}


def _named(r: RejectedOp, sigs: dict[int, str]) -> RejectedOp:
    r.signature = sigs.get(r.subgraph, f"subgraph_{r.subgraph}")
    return r
