"""Text for calibration and evaluation, from what the dependencies and Python already ship — kept apart.

Default calibration text: the 50 calibration prompts litert-torch ships for its NPU export, plus Python's bundled
documentation topics (pydoc_data). Default evaluation text: a fixed set of other documentation topics, never used for
calibration, so that accuracy is measured on text the ranges were not fitted to.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from quantlab.errors import UserError

EVAL_TOPICS = ("assignment", "class", "compound", "exceptions", "execmodel", "import")


def read_text(path: Path) -> str:
    """Read a UTF-8 text file; a missing, undecodable or empty file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"text file {path} does not exist; pass an existing UTF-8 .txt file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; pass a UTF-8 .txt file") from None
    if not text.strip():
        raise UserError(f"{path} is empty; pass a file with some text in it")
    return text


def _topics() -> dict[str, str]:
    import pydoc_data.topics as topics

    return topics.topics


def default_eval_text() -> str:
    """About 85 k characters (~20 k tokens) of English documentation prose."""
    t = _topics()
    return "\n\n".join(t[k] for k in EVAL_TOPICS)


def litert_sample_prompts() -> list[str]:
    """The calibration prompts litert-torch ships with its NPU export (long, varied English prompts)."""
    pkg = "litert_torch.generative.export_hf.experimental.npu_export"
    return json.loads(resources.files(pkg).joinpath("sample_calibration_prompts.json").read_text())


def default_calibration_texts() -> list[str]:
    t = _topics()
    return litert_sample_prompts() + [t[k] for k in sorted(t) if k not in EVAL_TOPICS]


def load_texts(paths: list[Path]) -> list[str]:
    """User calibration text: .txt files (whole file) or .jsonl (one string, or an object with "text", per line)."""
    out: list[str] = []
    for p in paths:
        p = Path(p)
        if p.suffix == ".jsonl":
            out.extend(_jsonl(p))
        else:
            out.append(read_text(p))
    if not any(t.strip() for t in out):
        raise UserError("the calibration text is empty; pass .txt or .jsonl files with text in them")
    return out


def _jsonl(path: Path) -> list[str]:
    lines = read_text(path).splitlines()
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{path}:{n} is not valid JSON; each .jsonl line must be a string or {{\"text\": ...}}") from None
        text = obj if isinstance(obj, str) else obj.get("text") if isinstance(obj, dict) else None
        if not isinstance(text, str):
            raise UserError(f"{path}:{n} has no \"text\" string; each .jsonl line must be a string or {{\"text\": ...}}")
        out.append(text)
    return out
