"""Checks that a checkpoint is a Gemma3 *text* model before anything heavy is loaded."""

from __future__ import annotations

from typing import Any

from quantlab.errors import UserError

ACCEPTED = "a Gemma3 text model (model_type 'gemma3_text'), e.g. Gemma3-270M or Gemma3-1B"


def check_gemma3_text_config(config: Any, where: str) -> None:
    """Raise UserError unless `config` describes a Gemma3 text model quantlab can export."""
    model_type = getattr(config, "model_type", None)
    if model_type == "gemma3":
        raise UserError(
            f"{where} is a multimodal Gemma3 checkpoint (model_type 'gemma3'); quantlab accepts {ACCEPTED}"
        )
    if model_type != "gemma3_text":
        raise UserError(f"{where} has model_type {model_type!r}; quantlab accepts {ACCEPTED}")
    if getattr(config, "layer_types", None) is None:
        raise UserError(f"{where} has no layer_types in its config; quantlab accepts {ACCEPTED}")
