"""quantlab: Gemma3 text models to LiteRT for phones, quantized, compiled for Qualcomm NPUs, and measured.

One function per CLI command (quantlab/api.py): run_lab, export_model, calibrate_model, quantize_model,
analyze_model, check_model, compile_model, build_bundle, evaluate_model, simulate_npu, generate_text, write_report, run_sweep. Imported on first use, so
`import quantlab` stays light.
"""

from quantlab.errors import UserError

__all__ = ["UserError", "run_lab", "export_model", "calibrate_model", "quantize_model", "analyze_model",
           "check_model", "compile_model", "build_bundle", "evaluate_model", "simulate_npu", "generate_text",
           "write_report", "run_sweep"]


def __getattr__(name: str):
    if name in __all__:
        from quantlab import api

        return getattr(api, name)
    raise AttributeError(f"module 'quantlab' has no attribute {name!r}")
