"""manifest.json: what an artifact folder holds, how it was made, and what was measured.

Versioned (`format_version`); every stage reads it, adds its part and writes it back atomically. A folder is
self-contained: the host runtime needs only the .tflite files, the tokenizer folder and this file.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from quantlab.atomic import write_text
from quantlab.errors import UserError
from quantlab.runtime.host_inputs import HostParams

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TOKENIZER_DIR = "tokenizer"
_KEY_PACKAGES = ("quantlab", "torch", "litert-torch", "ai-edge-litert", "ai-edge-quantizer", "transformers")


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


def load(folder: Path) -> dict[str, Any]:
    """Read a folder's manifest; a folder without one is a UserError naming the fix."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise UserError(f"{folder} has no {MANIFEST}; run `quantlab export --out {folder}` first")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is corrupt ({exc.msg}); re-run `quantlab export --overwrite`") from None
    if data.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{path} has format_version {data.get('format_version')}, this quantlab reads {FORMAT_VERSION}; re-export"
        )
    return data


def save(folder: Path, data: dict[str, Any]) -> None:
    data = dict(data, format_version=FORMAT_VERSION, versions=versions())
    write_text(Path(folder) / MANIFEST, json.dumps(data, indent=2, sort_keys=False) + "\n")


def artifact_record(path: Path, **fields: Any) -> dict[str, Any]:
    """path (relative to the folder), bytes and sha256 of one artifact, plus any extra fields."""
    path = Path(path)
    return {"path": path.name, "bytes": path.stat().st_size, "sha256": sha256(path), **fields}


def host_params(data: dict[str, Any]) -> HostParams:
    raw = dict(data["host"])
    raw["inv_freq_global"] = tuple(raw["inv_freq_global"])
    raw["inv_freq_local"] = tuple(raw["inv_freq_local"])
    return HostParams(**raw)


def host_record(params: HostParams) -> dict[str, Any]:
    return asdict(params)
