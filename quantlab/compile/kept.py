"""Compiled files kept by the search for the compile stage: a main compiled once is not compiled again.

The search compiles every candidate it builds; the lab then quantizes the chosen recipe again (and `int16_w8`, which
is the search's all-int16 candidate) and would compile them a second time, ~100 s per 270M main and SoC. Quantizing
is deterministic (same recipe and ranges, same bytes), so a search that compiles at the level that ships
(`--search-opt-level O3`; by default it checks at O2, whose files are not kept: compile/levels.py) keeps the
compiled files of the candidates a later compile may ask for, keyed by what decides the compiler's output: the
sha256 of the input main, the SoC, weight sharing, the optimization level, and the versions of the plugin
(ai-edge-litert) and of the QNN libraries (onnxruntime-qnn). `compile_model` takes a kept file whose key matches
instead of running the compiler, with the compile's own record (coverage, rejected ops, seconds and peak memory of
the run that made it). A main whose bytes differ in any way is compiled.

The kept files live in the artifact folder under `.compiled-kept/` (one compiled main each, ~0.4 GB for the 270M);
the search keeps at most its chosen, smallest and all-int16 candidates, and a compile moves the file out.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from quantlab import manifest
from quantlab.atomic import atomic_path

KEPT_DIR = ".compiled-kept"


def compile_key(model: Path, soc: str, weight_sharing: bool, opt_level: str) -> str:
    """What decides the compiler's output, as one name: the input's sha256, the SoC, weight sharing, the optimization
    level, the tools."""
    v = manifest.versions()
    tools = f"{v['ai-edge-litert']}|{v['onnxruntime-qnn']}"
    tag = hashlib.sha256(f"{soc}|{weight_sharing}|{opt_level}|{tools}".encode()).hexdigest()[:12]
    return f"{manifest.sha256(model)[:32]}-{tag}"


class KeptCompiles:
    """The kept compiled files of one artifact folder."""

    def __init__(self, folder: Path) -> None:
        self.dir = Path(folder) / KEPT_DIR

    def put(self, key: str, compiled: Path, record: dict) -> None:
        """Keep `compiled` (moved in) with its compile record (manifest.CompileRecord as a dict)."""
        entry = self.dir / key
        entry.mkdir(parents=True, exist_ok=True)
        os.replace(compiled, entry / "compiled.tflite")
        with atomic_path(entry / "record.json") as tmp:  # written last: an entry without it is not there
            tmp.write_text(json.dumps(record))

    def take(self, key: str, out: Path) -> dict | None:
        """Move the kept file for `key` to `out` and return its record; None when nothing is kept for `key`."""
        entry = self.dir / key
        if not (entry / "record.json").is_file() or not (entry / "compiled.tflite").is_file():
            return None
        record = json.loads((entry / "record.json").read_text())
        with atomic_path(out) as tmp:
            shutil.move(entry / "compiled.tflite", tmp)
        shutil.rmtree(entry, ignore_errors=True)
        self._drop_if_empty()
        return record

    def keys(self) -> list[str]:
        return sorted(p.name for p in self.dir.glob("*") if (p / "record.json").is_file())

    def keep_only(self, keys: set[str]) -> None:
        """Delete every kept file whose key is not in `keys` (and the folder when nothing is left)."""
        for p in list(self.dir.glob("*")):
            if p.name not in keys:
                shutil.rmtree(p, ignore_errors=True)
        self._drop_if_empty()

    def _drop_if_empty(self) -> None:
        if self.dir.is_dir() and not any(self.dir.iterdir()):
            self.dir.rmdir()
