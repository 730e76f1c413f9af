"""The typed manifest: every record type round-trips through JSON, older manifests are refused with the fix, and
concurrent writers through `edit()` never lose an update."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp

import pytest

from quantlab import manifest
from quantlab.errors import UserError
from quantlab.manifest import (AnalysisRecord, Artifact, Candidate, CheckRecord, CompileRecord, ExportRecord,
                               Manifest, Metrics, ModelRecord, QuantizeRecord, SensitivityRow, StageTiming)


def _example() -> Manifest:
    model = ModelRecord("m", "tiny-random", "random weights", True, 2, ["sliding_attention", "full_attention"], 64, 4,
                        1, 32, 262144, 2, [1, 106], 0)
    metrics = Metrics("int8", "m", True, 63, 12.5, windows=1, window_tokens=64, reference="fp32", kl=0.1,
                      top1_agreement=0.9, max_abs_logit_diff=3.0, by_position=[{"from": 0, "to": 127, "perplexity": 12.5}],
                      speed={"decode_tokens_per_s": 50.0}, peak_rss_mb_runtime=300.0, peak_rss_mb=600.0,
                      per_op={"by_layer": {"0": {"median_db": 30.0}}}, sample={"prompt": "p", "text": "t"})
    compiled = CompileRecord("SM8750", bytes=10, input_bytes=9, seconds=1.0, coverage={"decode": {
        "ops_offloaded": 5, "ops_total": 5, "partitions": 1}}, rejected=[{"op": "X"}])
    q = QuantizeRecord(recipe=[{"regex": ".*"}], origin="shipped", recipe_digest="abc", calibration={"windows": 2},
                       int8_fc_share=0.5)
    analysis = AnalysisRecord(
        tokens=64, text="t", all_int16={"kl": 0.1}, all_int8={"kl": 1.0},
        rows=[SensitivityRow("lm_head", "LM head", True, 0.2, 0.8, 0.1, 0.9, 0.05, 0.95)], order=["lm_head"],
        weight_share={"lm_head": 0.6}, fp32_perplexity=10.0, tolerance=1.05, soc="SM8750",
        candidates=[Candidate("a16_a8-lm_head", ["lm_head"], 0.6, 10.4, 1.04, 1.05, 0.05, 0.9, 100, 2.0, 0, True)],
        chosen="a16_a8-lm_head", chosen_within_tolerance=True)
    return Manifest(
        model=model, export=ExportRecord(8, 64, {"prefill_8": 8, "decode": 1}, rotation={"channels": [3]}),
        host={"cache_len": 64}, created="now",
        artifacts={"int8": Artifact("m_main_int8.tflite", 10, "f" * 64, "main", "int8", io_dtype={"embeddings": "int8"},
                                    embedder="embedder_int8", quantize=q, check=CheckRecord([{"rule": "r"}]),
                                    compiled={"SM8750": compiled}, metrics=metrics)},
        analysis=analysis, timings={"export": StageTiming(1.0, 1, 100.0, 1, 0)}, last_run_seconds=3.0)


def test_every_record_type_round_trips_through_json():
    m = _example()
    again = Manifest.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again == m
    # each record type on its own, too (every dataclass in the module)
    types = [c for c in vars(manifest).values() if dataclasses.is_dataclass(c) and c.__module__ == manifest.__name__]
    seen = set()

    def walk(obj):
        if dataclasses.is_dataclass(obj):
            seen.add(type(obj))
            assert manifest.from_dict(type(obj), json.loads(json.dumps(manifest.to_dict(obj)))) == obj
            for f in dataclasses.fields(obj):
                walk(getattr(obj, f.name))
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    walk(m)
    assert seen == set(types), set(types) - seen


def test_saved_manifest_loads_and_older_ones_are_refused(tmp_path):
    manifest.save(tmp_path, _example())
    assert manifest.load(tmp_path).artifacts["int8"].compiled["SM8750"].fully_offloaded
    old = json.loads((tmp_path / manifest.MANIFEST).read_text())
    old["format_version"] = 1
    (tmp_path / manifest.MANIFEST).write_text(json.dumps(old))
    with pytest.raises(UserError, match="--overwrite"):
        manifest.load(tmp_path)
    (tmp_path / manifest.MANIFEST).write_text("{not json")
    with pytest.raises(UserError, match="corrupt"):
        manifest.load(tmp_path)
    unknown = {**_example().to_dict(), "surprise": 1}
    (tmp_path / manifest.MANIFEST).write_text(json.dumps(unknown))
    with pytest.raises(UserError, match="surprise"):
        manifest.load(tmp_path)


def _add(folder, key):
    with manifest.edit(folder) as m:
        m.artifacts[key] = dataclasses.replace(m.artifacts["int8"], path=key)


def test_concurrent_edits_keep_every_update(tmp_path):
    manifest.save(tmp_path, _example())
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_add, args=(tmp_path, f"v{i}")) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert {f"v{i}" for i in range(8)} <= set(manifest.load(tmp_path).artifacts)
