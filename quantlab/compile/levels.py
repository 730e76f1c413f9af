"""QNN HTP graph optimization levels (the plugin's `--qualcomm_optimization_level`): which to ship, which to check with.

The level decides how long a compile takes and how well the graph is optimized for the phone, not which ops the NPU
takes: the plugin partitions the graph and QNN validates each op before the optimizer runs. Measured on the 270M
int16_w8 main for SM8750 (2026-12-07, `bench/compile_level_bench.py`): O3 94 s, O1 26 s, O2 11 s, the same ops
offloaded in one partition per signature at each level, files within 0.2 % of each other.

O3 (the plugin's default): what a phone should run; every shipped compile. O2 ("optimize for prepare"): the fastest
compile with the same coverage; choose it to check that a main compiles (the search's candidates), never to ship.
O1: the optimizer's basic passes.
"""

from quantlab.errors import UserError

OPT_LEVELS = ("O1", "O2", "O3")
SHIP_LEVEL = "O3"
CHECK_LEVEL = "O2"  # the search's default


def check_level(level: str, option: str = "--opt-level") -> str:
    """`level` when it is one of OPT_LEVELS, else a UserError naming `option` and the levels."""
    if level not in OPT_LEVELS:
        raise UserError(f"{option} must be one of {', '.join(OPT_LEVELS)} (O3 ships; O2 only checks what compiles), "
                        f"got {level!r}")
    return level
