"""`quantlab bundle`: a `.litertlm` for one variant (compiled or not) — what LiteRT-LM loads on the phone.

Sections (litert-lm-builder's LitertLmFileBuilder, as litert-torch's own `package_model` writes them):
  LlmMetadata            start token (BOS), stop tokens, pad token, max tokens = cache length, model type gemma3,
                         the tokenizer's chat template
  HF tokenizer           the folder's tokenizer.json
  tf_lite_prefill_decode the variant's main (its compiled copy for `--soc`), as exported: its names are LiteRT-LM's
  tf_lite_embedder       the embedder the main ships with, writing main's `embeddings` dtype (bundle/embedder.py)
  tf_lite_aux            RoPE, masks and cache update for prefill and decode (bundle/aux.py)

LiteRT-LM 0.18.1's NPU executor computes the local attention mask itself with a 512-token sliding window whenever
every layer's cache has the full length (quantlab's layout), so a model with another window would run wrongly: such
a bundle is refused, as is a main with int8 KV caches, which it cannot initialise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tempfile
import time
from pathlib import Path

from quantlab import artifacts, layout, manifest
from quantlab.atomic import atomic_path, check_writable
from quantlab.bundle.aux import TensorType, build_aux
from quantlab.bundle.embedder import bundle_embedder
from quantlab.check.graph import signature_io
from quantlab.errors import UserError
from quantlab.runtime.session import ArtifactSet

LITERT_LM_WINDOW = 512  # the local-attention window LiteRT-LM's NPU executor assumes (llm_litert_npu_mask.cc)


def cache_refused(main: manifest.Artifact) -> bool:
    """LiteRT-LM 0.18.1's NPU executor fills new KV caches with a value and cannot for int8 (element type 9): such a
    bundle fails to load ("Unsupported tensor element type for Fill: 9"; measured with quantlab's int8 scheme)."""
    return main.io_dtype.get("kv_cache") == "int8"


def llm_metadata(arts: ArtifactSet) -> bytes:
    """The serialized LlmMetadata proto for the folder's model and cache."""
    from litert_lm_builder.runtime.proto import llm_metadata_pb2, llm_model_type_pb2

    info = arts.model_info
    md = llm_metadata_pb2.LlmMetadata()
    md.start_token.token_ids.ids.append(info.bos_token_id)
    for eos in info.eos_token_ids:
        md.stop_tokens.add().token_ids.ids.append(eos)
    md.pad_token.token_ids.ids.append(info.pad_token_id)
    md.max_num_tokens = arts.host.cache_len
    md.llm_model_type.CopyFrom(llm_model_type_pb2.LlmModelType(gemma3=llm_model_type_pb2.Gemma3()))
    template = arts.tokenizer.chat_template
    if template:
        # (as litert-torch writes it for LiteRT-LM's minijinja: no generation tags, no .get())
        template = re.sub(r"\{%-?\s*(?:end)?generation\s*-?%\}", "", template)
        md.jinja_prompt_template = re.sub(r"\.get\(\s*(['\"][^'\"]+['\"])\s*\)", r"[\1]", template)
    return md.SerializeToString()


def _aux(folder: Path, arts: ArtifactSet, types: dict[str, TensorType]) -> Path:
    """The aux model for main's input types, converted once per distinct set (variants of one scheme family and their
    compiled copies share it) and kept in the folder's .bundle-aux/."""
    info = arts.model_info
    # What the aux graph depends on: RoPE and mask types (their values are quantized with main's pinned scales) and
    # the caches' dtypes (a cache update is a copy: its scales never enter the graph).
    shape = sorted((n, dataclasses.astuple(t) if not layout.is_cache(n) else t.dtype) for n, t in types.items()
                   if n in (*layout.ROPE, layout.MASK_GLOBAL, layout.MASK_LOCAL) or layout.is_cache(n))
    key = hashlib.sha256(json.dumps([dataclasses.asdict(arts.host), info.num_layers, info.num_kv_heads, info.head_dim,
                                     shape], default=str).encode()).hexdigest()[:16]
    path = folder / ".bundle-aux" / f"aux_{key}.tflite"
    if not path.is_file():
        path.parent.mkdir(exist_ok=True)
        with atomic_path(path) as tmp:
            build_aux(arts.host, info.num_layers, info.num_kv_heads, info.head_dim, types, tmp)
    return path


def build_bundle(folder: Path, variant: str, soc: str | None = None, overwrite: bool = False) -> manifest.Artifact:
    """Write `<model>_<variant>[_aot_<soc>].litertlm` into `folder` and record it; returns its record."""
    import litert_lm_builder as lb

    folder = Path(folder)
    arts = ArtifactSet(folder, variant)
    if arts.host.sliding_window != LITERT_LM_WINDOW:
        raise UserError(f"{arts.model_info.name} has a {arts.host.sliding_window}-token sliding window; LiteRT-LM's NPU "
                        f"executor computes local masks with {LITERT_LM_WINDOW} (Gemma3's own), so this bundle would "
                        "run a different model; bundle a model with Gemma3's window")
    if cache_refused(arts.data.artifacts[variant]):
        raise UserError(f"{variant} keeps its KV caches at int8, which LiteRT-LM 0.18.1 cannot initialise (\"Unsupported "
                        "tensor element type for Fill: 9\"); bundle a variant with int16 or float caches")
    main_key = artifacts.compiled_key(variant, soc) if soc else variant
    if main_key not in arts.data.artifacts:
        raise UserError(f"{folder} has no {main_key}; run `quantlab compile` for {soc} first" if soc else
                        f"{folder} has no variant {variant}")
    out = folder / artifacts.bundle_file(arts.model_info.name, variant, soc)
    check_writable(out, overwrite)
    t0 = time.perf_counter()
    dec, _ = signature_io(arts.path(variant))[layout.DECODE]  # (read from the file: no interpreter for a 4 GB main)
    types = {n: TensorType.of(t) for n, t in dec.items()}
    emb = types[layout.EMBEDDINGS]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        aux = _aux(folder, arts, types)
        embedder = bundle_embedder(arts.path(arts.embedder_key), work / "embedder.tflite", emb.dtype, emb.scale,
                                   emb.zero_point)
        (work / "llm_metadata.pb").write_bytes(llm_metadata(arts))
        b = lb.LitertLmFileBuilder()
        b.add_system_metadata(lb.Metadata(key="Authors", value="quantlab", dtype=lb.DType.STRING))
        b.add_llm_metadata(str(work / "llm_metadata.pb"))
        b.add_hf_tokenizer(str(folder / manifest.TOKENIZER_DIR / "tokenizer.json"))
        b.add_tflite_model(str(arts.path(main_key)), lb.TfLiteModelType.PREFILL_DECODE)
        b.add_tflite_model(str(embedder), lb.TfLiteModelType.EMBEDDER)
        b.add_tflite_model(str(aux), lb.TfLiteModelType.AUX)
        with atomic_path(out) as part, open(part, "wb") as f:
            b.build(f)
    record = manifest.Artifact.of(out, "bundle", arts.data.artifacts[variant].scheme, source=main_key, soc=soc,
                                  embedder=arts.embedder_key, extra={"seconds": round(time.perf_counter() - t0, 1)})
    with manifest.edit(folder) as m:
        m.artifacts[artifacts.bundle_key(variant, soc)] = record
    return record
