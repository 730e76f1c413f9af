"""Shipped recipes: ai-edge-quantizer recipe JSON, one file per shipped scheme (see quantlab/quantize/schemes.py)."""
