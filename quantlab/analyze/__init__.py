"""Per-group sensitivity of main to quantization, and the mixed-precision search built on it."""
