"""manifest.json: what an artifact folder holds, how it was made and what was measured — as typed records.

One `Manifest` per folder (format_version 2): the model, how main was exported, the host's parameters, one
`Artifact` per file (embedders, mains, compiled mains, bundles) with its check, compile and metrics records, the
analysis summary and the lab's stage timings. Every record is a dataclass that round-trips through `to_dict` /
`from_dict` (tests/test_manifest.py covers each type). All writes go through `edit()`, which locks the folder, reads,
lets the caller change the records and writes atomically: there is one writer, whoever calls it.

A folder written by an older quantlab (format 1) is refused with the command that rebuilds it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import platform
import types
import typing
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from quantlab.atomic import write_text
from quantlab.errors import UserError

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
TOKENIZER_DIR = "tokenizer"
_KEY_PACKAGES = ("quantlab", "torch", "litert-torch", "ai-edge-litert", "ai-edge-quantizer", "transformers",
                 "litert-lm-builder", "litert-lm-api", "onnxruntime-qnn")


def versions() -> dict[str, str]:
    """Versions of quantlab and of the dependencies that shape its artifacts."""
    out = {"python": platform.python_version()}
    for name in _KEY_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---- records -------------------------------------------------------------------------------------------------------

@dataclass
class ModelRecord:
    """The model an artifact folder was exported from. `spec` reloads it (`eval --reference torch`)."""

    name: str
    spec: str
    source: str
    random_weights: bool
    num_layers: int
    layer_types: list[str]
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    bos_token_id: int
    eos_token_ids: list[int]
    pad_token_id: int


@dataclass
class ExportRecord:
    """How main was exported: its signatures (name → tokens per call) and the function-preserving transforms."""

    prefill_len: int
    cache_len: int
    signatures: dict[str, int]
    smoothing: dict | None = None
    rotation: dict | None = None
    hadamard: dict | None = None
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class CheckRecord:
    """`quantlab check` on one artifact: every violation (rule, op, tensor, fix) as its dict."""

    violations: list[dict] = field(default_factory=list)


@dataclass
class CompileRecord:
    """One QNN AOT compile of a main for one SoC. `failed`: the compiler produced nothing; `errors` says why."""

    soc: str
    failed: bool = False
    errors: list[str] = field(default_factory=list)
    bytes: int = 0
    input_bytes: int = 0
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    weight_sharing: bool = True
    opt_level: str = "O3"  # QNN's graph optimization level (compile/compiler.py: O3 ships, O2 only checks coverage)
    coverage: dict[str, dict] = field(default_factory=dict)  # signature → ops_offloaded, ops_total, partitions
    dispatch_ops: int = 0
    rejected: list[dict] = field(default_factory=list)
    reused: bool = False  # the search's compile of the same bytes (compile/kept.py); seconds are that compile's

    @property
    def fully_offloaded(self) -> bool:
        return not self.failed and bool(self.coverage) and all(
            c["ops_offloaded"] == c["ops_total"] for c in self.coverage.values())

    @property
    def offloaded_fraction(self) -> float:
        total = sum(c["ops_total"] for c in self.coverage.values())
        return sum(c["ops_offloaded"] for c in self.coverage.values()) / total if total else 0.0


@dataclass
class Metrics:
    """What `quantlab eval` measured for one variant (see quantlab/evaluate). KL, top-1 and the logit difference are
    against `reference` (None: no reference). `by_position` rows: from, to, perplexity[, kl, top1_agreement]."""

    variant: str
    model: str
    random_weights: bool
    tokens_scored: int
    perplexity: float
    windows: int = 0
    window_tokens: int = 0
    reference: str | None = None
    kl: float | None = None
    top1_agreement: float | None = None
    max_abs_logit_diff: float | None = None
    by_position: list[dict] = field(default_factory=list)
    speed: dict = field(default_factory=dict)
    peak_rss_mb_runtime: float | None = None
    peak_rss_mb: float | None = None
    per_op: dict | None = None
    sample: dict | None = None


@dataclass
class QuantizeRecord:
    """How a quantized main was made: the scheme's recipe (ai-edge-quantizer JSON) and where it came from, the
    calibration it used, the weight rounding applied, and what it cost."""

    recipe: list[dict]
    origin: str
    recipe_digest: str
    calibration: dict
    weight_rounding: str = "nearest"
    int8_fc_share: float = 0.0
    seconds: float = 0.0
    peak_rss_mb: float = 0.0


@dataclass
class Artifact:
    """One file of the folder. role: embedder | main | compiled | bundle. `scheme` is the scheme name (fp32, int8,
    int16_w8, a recipe's name, ...). `embedder`: the embedder key a main ships with. `source`: the artifact it was
    made from (a compiled main's variant, the int8 embedder's fp32 one). Mains carry their check, per-SoC compile
    results and metrics."""

    path: str
    bytes: int
    sha256: str
    role: str
    scheme: str
    io_dtype: dict[str, str] = field(default_factory=dict)
    embedder: str | None = None
    source: str | None = None
    soc: str | None = None
    quantize: QuantizeRecord | None = None
    check: CheckRecord | None = None
    compiled: dict[str, CompileRecord] = field(default_factory=dict)
    metrics: Metrics | None = None
    npu_sim: dict[str, dict] = field(default_factory=dict)  # soc → what the HTP simulator computed (evaluate/npu_sim)
    extra: dict = field(default_factory=dict)

    @classmethod
    def of(cls, path: Path, role: str, scheme: str, **fields: Any) -> "Artifact":
        """The record of the file at `path` (name, size, hash) with the other fields given."""
        path = Path(path)
        return cls(path=path.name, bytes=path.stat().st_size, sha256=sha256(path), role=role, scheme=scheme, **fields)


@dataclass
class SensitivityRow:
    group: str
    label: str
    fc: bool
    kl_8: float
    top1_8: float
    kl_16: float
    top1_16: float
    kl_float: float | None = None  # (measured with `analyze --float-column` only)
    top1_float: float | None = None
    kl_w4: float | None = None  # fully-connected groups: 4-bit weights, int16 activations
    top1_w4: float | None = None


@dataclass
class Candidate:
    """One mixed-precision candidate of the search: its name (the a16_a8-… grammar), the FC groups at int8, and what
    was measured (against FP32 on the analysis text) and compiled."""

    name: str
    int8_groups: list[str]
    int8_weight_share: float
    perplexity: float
    perplexity_ratio: float
    expected_ratio: float
    kl: float
    top1_agreement: float
    bytes: int
    seconds: float
    qnn_rule_violations: int
    fully_offloaded: bool
    coverage: dict = field(default_factory=dict)
    compiled_bytes: int | None = None
    compile_error: str | None = None
    w4_groups: list[str] = field(default_factory=list)
    w4_weight_share: float = 0.0


@dataclass
class AnalysisRecord:
    """The sensitivity table and the mixed-precision search (`quantlab analyze`); recipes live in analysis.json."""

    tokens: int
    text: str
    all_int16: dict
    all_int8: dict
    rows: list[SensitivityRow]
    order: list[str]
    weight_share: dict[str, float]
    fp32_perplexity: float
    tolerance: float
    soc: str
    candidates: list[Candidate]
    chosen: str | None
    chosen_within_tolerance: bool
    seconds: float = 0.0
    smallest: str | None = None  # the smallest compiled main within tolerance (4-bit weights where they hold)
    skipped: list[str] = field(default_factory=list)  # candidates after an axis's first one over the tolerance
    compile_level: str = "O3"  # QNN's optimization level the candidates compiled at (analyze/search.py)


@dataclass
class StageTiming:
    seconds: float = 0.0  # its steps' seconds added up (each timed when it ran)
    wall_seconds: float | None = None  # the stage's wall time in the last run (steps side by side), None if it was not run
    steps: int = 0
    peak_rss_mb: float | None = None
    ran: int = 0
    skipped: int = 0


@dataclass
class Manifest:
    model: ModelRecord
    export: ExportRecord
    host: dict
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    analysis: AnalysisRecord | None = None
    timings: dict[str, StageTiming] = field(default_factory=dict)
    last_run_seconds: float | None = None
    created: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def artifact(self, key: str) -> Artifact:
        """The record under `key`; a missing one is a UserError listing what the folder holds."""
        if key not in self.artifacts:
            raise UserError(f"{key!r} is not in this folder; it holds {', '.join(sorted(self.artifacts))}")
        return self.artifacts[key]

    def mains(self) -> list[str]:
        """Keys of the uncompiled mains (fp32 and every quantized variant), in the order they were added."""
        return [k for k, a in self.artifacts.items() if a.role == "main"]

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Manifest":
        return from_dict(cls, data)


# ---- (de)serialisation of the records -------------------------------------------------------------------------------

def to_dict(obj: Any) -> Any:
    """A record (or container of records) as plain JSON values."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def from_dict(cls: type, data: Any) -> Any:
    """The record of type `cls` from `to_dict`'s output (nested records by their annotated types)."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {', '.join(sorted(unknown))}")
    return cls(**{k: _convert(hints[k], v) for k, v in data.items()})


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(inner[0], value) if len(inner) == 1 else value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value)
    if origin is dict:
        _, vt = typing.get_args(tp)
        return {k: _convert(vt, v) for k, v in value.items()}
    if origin is list:
        (vt,) = typing.get_args(tp)
        return [_convert(vt, v) for v in value]
    return value


# ---- reading and the one writer ------------------------------------------------------------------------------------

def load(folder: Path) -> Manifest:
    """Read a folder's manifest; a missing, corrupt or older one is a UserError naming the fix."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise UserError(f"{folder} has no {MANIFEST}; run `quantlab export --out {folder}` first")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is corrupt ({exc.msg}); re-run `quantlab export --out {folder} --overwrite`") from None
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise UserError(f"{path} has format_version {version}; this quantlab reads {FORMAT_VERSION}: rebuild the folder "
                        f"with `quantlab run --out {folder} --overwrite` (or `quantlab export ... --overwrite`)")
    try:
        return Manifest.from_dict(data)
    except (TypeError, ValueError, KeyError) as exc:
        raise UserError(f"{path} does not match format {FORMAT_VERSION} ({exc}); rebuild it with --overwrite") from None


def save(folder: Path, m: Manifest) -> None:
    """Write `m` as the folder's manifest (atomically). Use `edit()` to change an existing one."""
    m.format_version, m.versions = FORMAT_VERSION, versions()
    write_text(Path(folder) / MANIFEST, json.dumps(m.to_dict(), indent=1) + "\n")


@contextlib.contextmanager
def edit(folder: Path) -> Iterator[Manifest]:
    """Read-modify-write under a lock on the folder, so concurrent steps (processes, Ray tasks) never lose an update:
    `with manifest.edit(folder) as m: m.artifacts[key] = record`."""
    folder = Path(folder)
    with open(folder / ".manifest.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            m = load(folder)
            yield m
            save(folder, m)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
