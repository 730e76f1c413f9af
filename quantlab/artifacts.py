"""Artifact names: the one place that turns (model, role, variant, SoC) into a file name or a manifest key.

```
<model>_embedder_<fp32|int8>.tflite     manifest key embedder_<fp32|int8>
<model>_main_<variant>.tflite           manifest key <variant>            (fp32, int8, int16_w8, a recipe's name, ...)
<model>_main_<variant>_aot_<soc>.tflite manifest key <variant>_aot_<soc>  (QNN HTP AOT-compiled main)
<model>_<variant>[_aot_<soc>].litertlm  manifest key bundle_<variant>[_aot_<soc>]
```
"""

from __future__ import annotations

from pathlib import Path

EMBEDDER_PREFIX = "embedder_"
BUNDLE_PREFIX = "bundle_"


def embedder_key(choice: str) -> str:
    """The manifest key of the embedder `choice` (fp32 or int8)."""
    return f"{EMBEDDER_PREFIX}{choice}"


def compiled_key(variant: str, soc: str) -> str:
    return f"{variant}_aot_{soc.lower()}"


def bundle_key(variant: str, soc: str | None = None) -> str:
    return BUNDLE_PREFIX + (compiled_key(variant, soc) if soc else variant)


def embedder_file(model: str, choice: str) -> str:
    return f"{model}_{embedder_key(choice)}.tflite"


def main_file(model: str, variant: str) -> str:
    return f"{model}_main_{variant}.tflite"


def aot_path(main: Path, soc: str) -> Path:
    """Where a main's compiled copy for `soc` goes: beside it, `<stem>_aot_<soc>.tflite`."""
    main = Path(main)
    return main.with_name(f"{main.stem}_aot_{soc.lower()}.tflite")


def bundle_file(model: str, variant: str, soc: str | None = None) -> str:
    return f"{model}_{compiled_key(variant, soc) if soc else variant}.litertlm"


def is_reserved_variant(name: str) -> bool:
    """Names a quantized main may not take: the float main, and embedder or bundle keys."""
    return name == "fp32" or name.startswith((EMBEDDER_PREFIX, BUNDLE_PREFIX)) or "_aot_" in name
