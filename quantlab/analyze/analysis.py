"""`quantlab analyze DIR`: sensitivity table + mixed-precision search; writes analysis.json and the chosen recipe.

The chosen recipe is saved as DIR/recipes/<name>.json (plain ai-edge-quantizer recipe JSON: edit it and pass it to
`quantlab quantize --scheme`), and its name is the variant the lab builds as its third artifact.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from quantlab.analyze.search import SearchConfig, search
from quantlab.analyze.sensitivity import Bench, sensitivity
from quantlab.atomic import write_text
from quantlab.calibration.ranges import load_ranges
from quantlab.manifest import AnalysisRecord, Candidate, SensitivityRow
from quantlab.procmon import peak_rss_mb

ANALYSIS_FILE = "analysis.json"
FORMAT_VERSION = 1
RECIPES_DIR = "recipes"


def analyze(folder: Path, cfg: SearchConfig = SearchConfig(), tokens: int = 256, quiet: bool = False,
            float_column: bool = False, jobs: int = 1, on_ray: bool = False) -> dict:
    """jobs: sensitivity rows measured side by side (sensitivity.py), as cores and memory allow. on_ray: by Ray
    actors across the cluster this process is connected to (the lab on `--ray-address`)."""
    folder = Path(folder)
    t0 = time.perf_counter()
    bench = Bench(folder, tokens)
    try:
        sens = sensitivity(bench, quiet=quiet, float_column=float_column, jobs=jobs, on_ray=on_ray)
        found = search(bench, sens, cfg, quiet=quiet)
    finally:
        bench.cleanup()
    _, calib_meta = load_ranges(folder)
    result = {
        "format_version": FORMAT_VERSION,
        "tokens": len(bench.window),
        "text": "calibration-domain text (the window after those used for ranges)",
        "calibration_sha": calib_meta["main_sha256"],
        "sensitivity": sens,
        "search": found,
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    for name in {found["chosen"], found.get("smallest")} - {None}:
        chosen = next(c for c in found["candidates"] if c["name"] == name)
        path = recipe_path(folder, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(chosen["recipe"], indent=1) + "\n")
    write_text(folder / ANALYSIS_FILE, json.dumps(result, indent=1))
    return result


def recipe_path(folder: Path, name: str) -> Path:
    return Path(folder) / RECIPES_DIR / f"{name}.json"


def analysis_record(result: dict | None) -> AnalysisRecord | None:
    """The manifest's summary of an analysis (analysis.json keeps the candidates' recipes too)."""
    if result is None:
        return None
    sens, found = result["sensitivity"], result["search"]
    keep = {f for f in Candidate.__dataclass_fields__}
    return AnalysisRecord(
        tokens=result["tokens"], text=result["text"], all_int16=sens["all_int16"], all_int8=sens["all_int8"],
        rows=[SensitivityRow(**r) for r in sens["rows"]], order=found["order"], weight_share=found["weight_share"],
        fp32_perplexity=found["fp32_perplexity"], tolerance=found["tolerance"], soc=found["soc"],
        candidates=[Candidate(**{k: v for k, v in c.items() if k in keep}) for c in found["candidates"]],
        chosen=found["chosen"], chosen_within_tolerance=found["chosen_within_tolerance"], seconds=result["seconds"],
        smallest=found.get("smallest"), skipped=found.get("skipped", []),
        compile_level=found.get("compile_level", "O3"))


def load_analysis(folder: Path) -> dict | None:
    """The folder's analysis, or None if there is none or it was written in another format (re-run analyze)."""
    path = Path(folder) / ANALYSIS_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data if data.get("format_version") == FORMAT_VERSION else None
