"""`quantlab export`: the FP32 embedder and main .tflite files, the tokenizer and manifest.json."""

from __future__ import annotations

import dataclasses
import gc
import time
from pathlib import Path

import torch

from quantlab import artifacts, layout, manifest
from quantlab.atomic import atomic_path, check_writable
from quantlab.export.npu_main import Embedder, NpuGemma3Main, sample_main_inputs
from quantlab.export.hadamard import BLOCK, hadamard_fcs, unhadamard
from quantlab.export.rotate import unrotate
from quantlab.models.loaded import LoadedModel
from quantlab.progress import Stage
from quantlab.runtime.host_inputs import host_params_from_model


def _convert(module: torch.nn.Module, signatures: dict[str, dict], path: Path) -> None:
    """Convert `module` with one signature per entry and write it atomically to `path`."""
    import litert_torch

    litert_torch.config.show_progress = False  # our Stage lines say what runs; its per-pass lines are noise
    conv = None
    for sig, kwargs in signatures.items():
        conv = (conv or litert_torch).signature(sig, module, sample_kwargs=kwargs)
    edge = conv.convert()
    with atomic_path(path) as tmp:
        edge.export(str(tmp))
    del edge


def model_record(loaded: LoadedModel) -> manifest.ModelRecord:
    cfg = loaded.config
    return manifest.ModelRecord(
        name=loaded.name,
        # An absolute path, so `eval --reference torch` can reload the model from anywhere.
        spec=str(Path(loaded.spec).resolve()) if Path(loaded.spec).exists() else loaded.spec,
        source=loaded.source,
        random_weights=loaded.random_weights,
        num_layers=cfg.num_hidden_layers,
        layer_types=list(cfg.layer_types),
        hidden_size=cfg.hidden_size,
        num_heads=cfg.num_attention_heads,
        num_kv_heads=cfg.num_key_value_heads,
        head_dim=cfg.head_dim,
        vocab_size=cfg.vocab_size,
        bos_token_id=cfg.bos_token_id,
        eos_token_ids=_eos_ids(loaded),
        pad_token_id=cfg.pad_token_id,
    )


def _eos_ids(loaded: LoadedModel) -> list[int]:
    ids = loaded.config.eos_token_id
    ids = list(ids) if isinstance(ids, (list, tuple)) else [ids]
    # Gemma3 instruction-tuned turns end with <end_of_turn>; stopping there too is what users expect.
    eot = loaded.tokenizer.convert_tokens_to_ids("<end_of_turn>")
    if isinstance(eot, int) and eot != loaded.tokenizer.unk_token_id and eot not in ids:
        ids.append(eot)
    return ids


def _windows(loaded: LoadedModel, config: layout.ExportConfig, texts: list[str] | None) -> list[list[int]]:
    """2 cache-length windows (BOS first) of `texts`, default the calibration texts: what transforms measure on."""
    from quantlab.texts import default_calibration_texts

    stream: list[int] = []
    for t in texts or default_calibration_texts():
        stream.extend(loaded.tokenizer(t).input_ids[1:])
        if len(stream) >= 2 * config.cache_len:
            break
    bos, n = loaded.config.bos_token_id, config.cache_len - 1
    return [[bos, *stream[s : s + n]] for s in range(0, min(len(stream), 2 * n), n)]


def _smooth(loaded: LoadedModel, config: layout.ExportConfig, texts: list[str] | None) -> dict:
    """Scale migration on `loaded.model` in place, with activation maxima from 2 cache-length windows of `texts`."""
    from quantlab.export.smooth import activation_maxima, smooth

    windows = _windows(loaded, config, texts)
    scales = smooth(loaded.model, activation_maxima(loaded.model, windows), config.smooth_alpha)
    return {"alpha": config.smooth_alpha, "tokens": sum(map(len, windows)), "max_scale": round(max(scales.values()), 3)}


def _rotate(loaded: LoadedModel, config: layout.ExportConfig, texts: list[str] | None) -> dict:
    """Residual-stream rotation of `loaded.model` in place, its channels found on 2 cache-length windows of `texts`."""
    from quantlab.export.rotate import massive_channels, residual_channel_maxima, rotate

    windows = _windows(loaded, config, texts)
    maxima = residual_channel_maxima(loaded.model, windows)
    channels = massive_channels(maxima, config.rotate)
    done = rotate(loaded.model, channels)
    return {**done, "channel_max": [round(float(maxima[c]), 1) for c in channels],
            "median_channel_max": round(float(maxima.median()), 1)}


def _export_both(loaded: LoadedModel, config: layout.ExportConfig, emb_path: Path, main_fp32: Path,
                 timings: dict[str, float]) -> None:
    sigs = config.signatures()
    with Stage("export embedder", timings):
        emb = Embedder(loaded.model).eval()
        _convert(emb, {layout.embedder_signature(s): {layout.EMBEDDER_INPUT: torch.zeros(1, t, dtype=torch.int32)}
                       for s, t in sigs.items()}, emb_path)
        del emb
    gc.collect()
    with Stage("export main", timings):
        main = NpuGemma3Main(loaded.model).eval()
        _convert(main, {s: sample_main_inputs(loaded.config, config, t) for s, t in sigs.items()}, main_fp32)
        del main
    gc.collect()


def export_model(loaded: LoadedModel, out: Path, config: layout.ExportConfig, overwrite: bool = False,
                 smooth_texts: list[str] | None = None) -> manifest.Manifest:
    """Export `loaded` into `out`; returns the manifest. Refuses to replace existing files unless `overwrite`.

    With `config.smooth_alpha` > 0 the PyTorch model is first smoothed in place (on `smooth_texts`, default the
    calibration texts); the model is then no longer the one loaded, so reload it for any other use. The rotation
    (`config.rotate`) is measured on the same texts and undone after the export, as are `config.hadamard`'s."""
    out = Path(out)
    emb_path = out / artifacts.embedder_file(loaded.name, "fp32")
    main_fp32 = out / artifacts.main_file(loaded.name, "fp32")
    for p in (emb_path, main_fp32, out / manifest.MANIFEST):
        check_writable(p, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    sigs = config.signatures()

    smoothing = rotation = None
    with torch.no_grad():
        if config.smooth_alpha:
            with Stage("smooth (scale migration)", timings):
                smoothing = _smooth(loaded, config, smooth_texts)
        if config.rotate:
            with Stage("rotate (residual stream)", timings):
                rotation = _rotate(loaded, config, smooth_texts)
        try:
            undo = hadamard_fcs(loaded.model) if config.hadamard else None
            try:
                _export_both(loaded, config, emb_path, main_fp32, timings)
            finally:
                if undo is not None:
                    unhadamard(undo)
        finally:
            if rotation:
                unrotate(loaded.model, rotation)

    tok_dir = out / manifest.TOKENIZER_DIR
    loaded.tokenizer.save_pretrained(str(tok_dir))
    host = host_params_from_model(loaded.model, config.cache_len, config.prefill_len)
    floats = {"io": "float32"}
    data = manifest.Manifest(
        model=model_record(loaded),
        export=manifest.ExportRecord(
            prefill_len=config.prefill_len, cache_len=config.cache_len, signatures=sigs, smoothing=smoothing,
            rotation=rotation, hadamard={"block": BLOCK} if config.hadamard else None, seconds=timings),
        host=dataclasses.asdict(host),
        artifacts={
            artifacts.embedder_key("fp32"): manifest.Artifact.of(emb_path, "embedder", "fp32", io_dtype=floats),
            "fp32": manifest.Artifact.of(main_fp32, "main", "fp32", io_dtype=floats),
        },
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    manifest.save(out, data)
    return data
