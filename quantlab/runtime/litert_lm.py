"""A `.litertlm` bundle run by Google's LiteRT-LM runtime (litert-lm-api), through its NPU executor on this CPU.

LiteRT-LM runs an uncompiled NPU-layout bundle on an x86 CPU when its NPU backend gets no dispatch library
(`Backend.NPU(litert_dispatch_lib_dir="")`); a compiled (DISPATCH_OP) bundle needs the phone. Its Python API takes
text, not token ids: it tokenizes with the bundle's own tokenizer and prepends the start token (BOS).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from quantlab.errors import UserError


@dataclass
class Scored:
    """Per-token natural-log probabilities of a target text (LiteRT-LM's run_text_scoring)."""

    token_scores: list[float]


class LiteRTLMBundle:
    """An Engine over one bundle. Choose max_tokens = the bundle's cache length (LlmMetadata.max_num_tokens)."""

    def __init__(self, path: Path, max_tokens: int) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from litert_lm import Engine
        from litert_lm.interfaces import Backend

        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path} does not exist; run `quantlab bundle` first")
        self.engine = Engine(str(self.path), backend=Backend.NPU(litert_dispatch_lib_dir=""), max_num_tokens=max_tokens)

    def generate(self, prompt: str, max_new_tokens: int) -> str:
        """Greedy continuation of `prompt` (the NPU executor samples greedily)."""
        s = self.engine.create_session(apply_prompt_template=False, max_output_tokens=max_new_tokens)
        try:
            s.run_prefill([prompt])
            return s.run_decode().texts[0]
        finally:
            s.close()

    def score(self, prompt: str, target: str) -> Scored:
        """Log-probabilities of each token of `target` after BOS + `prompt`."""
        s = self.engine.create_session(apply_prompt_template=False)
        try:
            s.run_prefill([prompt])
            r = s.run_text_scoring([target], store_token_lengths=True)
            return Scored([float(x) for x in r.token_scores[0]])
        finally:
            s.close()

    def close(self) -> None:
        self.engine.close()
