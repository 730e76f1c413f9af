"""The Snapdragon SoCs LiteRT's Qualcomm plugin compiles for (its own target table), and lookup with a clear error."""

from __future__ import annotations

from quantlab.errors import UserError


def supported_socs() -> list[str]:
    """SoC names from ai_edge_litert's Qualcomm target table (SM8750 = Snapdragon 8 Elite, SM8650 = 8 Gen 3, ...)."""
    from ai_edge_litert.aot.vendors.qualcomm.target import SocModel

    return [m.value for m in SocModel if m.value != "ALL"]


def resolve_soc(name: str) -> str:
    socs = supported_socs()
    wanted = name.strip().upper()
    if wanted not in socs:
        raise UserError(f"unknown SoC {name!r}; LiteRT's Qualcomm plugin supports {', '.join(socs)}")
    return wanted
