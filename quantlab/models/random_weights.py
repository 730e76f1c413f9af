"""Gemma3 configs with random weights, for tests (`tiny-random`) and scale runs (`gemma3-1b-random`).

Accuracy on these models means nothing; every report must say "random weights". They use the real Gemma3 tokenizer,
so their vocabulary is the real 262,144 tokens.
"""

from __future__ import annotations

import torch

from quantlab.models.loaded import LoadedModel

VOCAB = 262144

# Tiny: 6 layers so that layer 5 is global, and a 16-token sliding window so short test sequences already exercise the
# local-attention mask. 4 query heads over 1 KV head, as in the real models (grouped-query attention).
TINY = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=6,
    num_attention_heads=4,
    num_key_value_heads=1,
    head_dim=32,
    sliding_window=16,
    query_pre_attn_scalar=32,
)

# The real Gemma3-1B shape.
GEMMA3_1B = dict(
    hidden_size=1152,
    intermediate_size=6912,
    num_hidden_layers=26,
    num_attention_heads=4,
    num_key_value_heads=1,
    head_dim=256,
    sliding_window=512,
    query_pre_attn_scalar=256,
)

# The tiny shape with Gemma3's own 512-token window: what LiteRT-LM's NPU executor assumes (quantlab/bundle/), for tests
# of bundles (with a cache of 64 every position is inside the window).
TINY_W512 = dict(TINY, sliding_window=512)

SHAPES = {"tiny-random": TINY, "tiny-random-w512": TINY_W512, "gemma3-1b-random": GEMMA3_1B}


def random_config(shape: dict):
    from transformers import Gemma3TextConfig

    n = shape["num_hidden_layers"]
    # Every 6th layer (5, 11, 17, ...) is global; the rest use the sliding window.
    layer_types = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(n)]
    return Gemma3TextConfig(
        vocab_size=VOCAB,
        layer_types=layer_types,
        rope_theta=1_000_000.0,
        rope_local_base_freq=10_000.0,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        bos_token_id=2,
        eos_token_id=1,
        pad_token_id=0,
        tie_word_embeddings=True,
        **shape,
    )


def _randomize(model: torch.nn.Module, seed: int) -> None:
    """Weights drawn wide enough that logits are far from uniform, so greedy parity tests mean something."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "model.norm.weight":
                p.fill_(3.0)  # (1 + 3) x: sharper next-token distributions, wider top-1 margins
            elif name.endswith("norm.weight"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
            else:
                fan_in = p.shape[-1]
                p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / fan_in**0.5))


def load_random(name: str, seed: int = 0) -> LoadedModel:
    """Build the named random config; the same seed gives the same weights."""
    from transformers import Gemma3ForCausalLM

    from quantlab.models.bundled import bundled_tokenizer

    config = random_config(SHAPES[name])
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(config)
    _randomize(model, seed)
    model.eval()
    return LoadedModel(
        name=name,
        spec=name,
        model=model,
        tokenizer=bundled_tokenizer(),
        source=f"random weights (seed {seed})",
        random_weights=True,
    )
