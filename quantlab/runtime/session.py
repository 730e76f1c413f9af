"""The host pipeline over LiteRT: tokenizer → embedder → main (prefill in chunks, then decode) → host KV caches.

One `Session` holds one conversation's caches. The caches live on the host in main's own cache dtype; after each call
the new K/V slices are written at their positions, so main stays stateless.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from quantlab import layout, manifest
from quantlab.artifacts import embedder_key
from quantlab.errors import UserError
from quantlab.runtime.host_inputs import HostParams
from quantlab.runtime.int_head import HostHead
from quantlab.runtime.litert_model import LiteRTModel
from quantlab.runtime.sampling import Sampler, SamplerConfig
from quantlab.runtime.tokenizer import Tokenizer


@dataclass
class Generation:
    text: str
    tokens: list[int]
    prompt_tokens: int
    prefill_s: float
    decode_s: float
    decode_calls: int
    stop_reason: str
    model: str = ""
    random_weights: bool = False
    backend: str = "cpu"  # what ran main: "cpu" (LiteRT's interpreter) or "htp-sim SM8750" (the simulated NPU)

    @property
    def prefill_tps(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s else 0.0

    @property
    def decode_tps(self) -> float:
        return self.decode_calls / self.decode_s if self.decode_s else 0.0


@dataclass
class ArtifactSet:
    """An artifact folder opened for inference: manifest, tokenizer, embedder and one main variant.

    The models load on first use, so that opening a set to read its tokenizer or host parameters costs no memory (the
    1B's FP32 main takes 13 GB once XNNPACK has packed it).
    """

    folder: Path
    variant: str = "fp32"
    num_threads: int | None = None
    data: manifest.Manifest = field(init=False)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.data = manifest.load(self.folder)
        mains = sorted(self.data.mains())
        if self.variant not in mains:
            raise UserError(f"variant {self.variant!r} is not in {self.folder}; available: {', '.join(mains)}")
        self.host = HostParams.from_dict(self.data.host)
        self.model_info = self.data.model
        self.tokenizer = Tokenizer(self.folder / manifest.TOKENIZER_DIR)
        self.prefill_sig = layout.prefill_signature(self.host.prefill_len)

    @property
    def embedder_key(self) -> str:
        """The embedder this main ships with (the FP32 main: the FP32 embedder)."""
        return self.data.artifacts[self.variant].embedder or embedder_key("fp32")

    def path(self, key: str) -> Path:
        """The file of artifact `key` of this folder."""
        return self.folder / self.data.artifact(key).path

    @cached_property
    def embedder(self) -> LiteRTModel:
        return LiteRTModel(self.path(self.embedder_key), self.num_threads)

    @cached_property
    def main(self) -> LiteRTModel:
        return LiteRTModel(self.path(self.variant), self.num_threads)

    def encode(self, text: str) -> list[int]:
        """Token ids with BOS first (Gemma3 needs it: without it perplexity rises ~6x)."""
        ids = self.tokenizer.encode(text)
        return [self.model_info.bos_token_id, *ids]

    def session(self, main: "MainRunner | None" = None) -> "Session":
        """A new sequence; `main` runs the main model in place of the CPU interpreter (e.g. runtime/sim_server.py)."""
        return Session(self, main)


class MainRunner(Protocol):
    """What runs main's signatures: LiteRTModel (the CPU interpreter) or SimMain (the HTP simulator)."""

    def run(self, sig: str, values: dict[str, np.ndarray], raw: dict[str, np.ndarray] | None = None,
            raw_outputs: tuple[str, ...] = ()) -> dict[str, np.ndarray]: ...


class Session:
    """KV caches and position for one sequence. Tensor types come from the CPU main; `main` (default: the CPU
    interpreter) computes, so the same chunking, caches and sampling drive any backend."""

    def __init__(self, arts: ArtifactSet, main: MainRunner | None = None) -> None:
        self.arts = arts
        self.main = main or arts.main
        self.n_layers = arts.model_info.num_layers
        dec_in = arts.main.inputs[layout.DECODE]
        self.cache_specs = {n: dec_in[n] for n in dec_in if layout.is_cache(n)}
        self.reset()

    def reset(self) -> None:
        self.pos = 0
        self.caches = {n: s.quantize(np.zeros(s.shape, np.float32)) for n, s in self.cache_specs.items()}

    @property
    def capacity(self) -> int:
        return self.arts.host.cache_len - self.pos

    def inputs(self, sig: str, tokens: list[int], t: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """main's inputs for up to `t` tokens at the current position: (float values, caches in the model's dtype)."""
        arts, n = self.arts, len(tokens)
        padded = np.full((1, t), arts.model_info.pad_token_id, np.int32)
        padded[0, :n] = tokens
        emb = arts.embedder.run(layout.embedder_signature(sig), {layout.EMBEDDER_INPUT: padded})[layout.EMBEDDER_OUTPUT]
        return {layout.EMBEDDINGS: emb, **arts.host.main_inputs(self.pos, t)}, self.caches

    def run(self, sig: str, values: dict[str, np.ndarray], raw: dict[str, np.ndarray], n: int,
            want_logits: bool, raw_logits: bool = False) -> np.ndarray | None:
        """Run main on prepared inputs; write the first `n` new K/V slices; return their logits if wanted (in the
        model's own dtype with `raw_logits`)."""
        slices = tuple(layout.slice_of(c) for c in self.cache_specs)
        wanted_raw = (*slices, layout.LOGITS) if raw_logits else slices
        out = self.main.run(sig, values, raw=self.as_inputs_of(sig, raw), raw_outputs=wanted_raw)
        spec_out = self.arts.main.outputs[sig]
        for cache, spec in self.cache_specs.items():
            name = layout.slice_of(cache)
            self.caches[cache][:, :, self.pos : self.pos + n] = spec_out[name].convert(out[name][:, :, :n], spec)
        self.pos += n
        if not want_logits:
            return None
        logits = out[layout.LOGITS]  # [1, T, vocab]; a scoring copy's head input may come as [1, hidden]
        return logits.reshape(1, -1, logits.shape[-1])[0, :n]

    def as_inputs_of(self, sig: str, caches: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The caches in `sig`'s own input types. They differ only where `sig` never reads a cache (prefill's last
        layer: with no logits, its attention is dead code, and the quantizer leaves that input float)."""
        specs = self.arts.main.inputs[sig]
        return {name: self.cache_specs[name].convert(arr, specs[name]) for name, arr in caches.items()}

    def step(self, sig: str, tokens: list[int], t: int, want_logits: bool,
             raw_logits: bool = False) -> np.ndarray | None:
        values, raw = self.inputs(sig, tokens, t)
        return self.run(sig, values, raw, len(tokens), want_logits, raw_logits)

    def feed(self, tokens: list[int]) -> None:
        """Write `tokens`' keys and values into the caches through prefill, in chunks of the prefill length.

        Chunks end where LiteRT-LM's NPU executor ends them, so that a quantized main computes the same numbers in
        both runtimes: it splits a prompt into blocks of T and holds each block's last token back for the next call,
        so from position 0 the calls cover [0, T-1), [T-1, 2T-1), ..."""
        self._check_room(len(tokens))
        t = self.arts.host.prefill_len
        s, n = 0, t - 1 if self.pos == 0 and t > 1 else t
        while s < len(tokens):
            self.step(self.arts.prefill_sig, tokens[s : s + n], t, want_logits=False)
            s, n = s + n, t

    def prefill(self, tokens: list[int]) -> np.ndarray:
        """Feed `tokens`; return the logits of the last one: all but the last through prefill, the last through decode
        (prefill returns no logits; see quantlab/layout.py)."""
        self._check_room(len(tokens))
        self.feed(tokens[:-1])
        return self.decode(tokens[-1])

    def decode(self, token: int) -> np.ndarray:
        """Feed one token; return its next-token logits."""
        if self.capacity < 1:
            raise UserError(f"the KV cache ({self.arts.host.cache_len} slots) is full; re-export with --cache-len")
        return self.step(layout.DECODE, [token], 1, want_logits=True)[0]

    def decode_chunks(self, tokens: list[int], rows: int, head: HostHead | None = None) -> Iterator[np.ndarray]:
        """Every token through decode, yielding next-token logits [≤ rows, vocab] per `rows` tokens: the logits at
        every position (scoring), streamed so that memory stays flat for Gemma3's 262k vocabulary. With `head`,
        main is a scoring copy whose decode returns the LM head's input (runtime/int_head.py), and the head is
        applied here to each chunk at once."""
        self._check_room(len(tokens))
        for s in range(0, len(tokens), rows):
            if head is None:
                yield np.stack([self.decode(tok) for tok in tokens[s : s + rows]])
            else:
                hidden = [self._decode_raw(tok) for tok in tokens[s : s + rows]]
                yield head(np.stack(hidden).reshape(len(hidden), -1))

    def _decode_raw(self, token: int) -> np.ndarray:
        if self.capacity < 1:
            raise UserError(f"the KV cache ({self.arts.host.cache_len} slots) is full; re-export with --cache-len")
        return self.step(layout.DECODE, [token], 1, want_logits=True, raw_logits=True)[0]

    def _check_room(self, n: int) -> None:
        if n > self.capacity:
            raise UserError(
                f"the prompt has {n} tokens but only {self.capacity} of {self.arts.host.cache_len} cache "
                f"slots are free; shorten it or re-export with a larger --cache-len"
            )


def generate(arts: ArtifactSet, prompt: str, max_new_tokens: int = 32,
             sampler: SamplerConfig = SamplerConfig(), main: MainRunner | None = None) -> Generation:
    """Prompt → continuation, stopping at EOS, `max_new_tokens`, or a full cache; `main` as in
    `ArtifactSet.session`."""
    sess = arts.session(main)
    ids = arts.encode(prompt)
    pick = Sampler(sampler)
    eos = set(arts.model_info.eos_token_ids)
    t0 = time.perf_counter()
    logits = sess.prefill(ids)
    t1 = time.perf_counter()
    out: list[int] = []
    calls = 0
    reason = "max_new_tokens"
    while len(out) < max_new_tokens:
        tok = pick(logits)
        if tok in eos:
            reason = "eos"
            break
        out.append(tok)
        if len(out) == max_new_tokens:
            break
        if sess.capacity < 1:
            reason = "cache_full"
            break
        logits = sess.decode(tok)
        calls += 1
    t2 = time.perf_counter()
    text = arts.tokenizer.decode(out, skip_special_tokens=True)
    return Generation(text, out, len(ids), t1 - t0, t2 - t1, calls, reason, arts.model_info.name,
                      arts.model_info.random_weights)
