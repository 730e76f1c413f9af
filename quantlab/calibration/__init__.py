"""Calibration: real text through the FP32 pipeline, captured as main's inputs, reduced to saved ranges."""
