"""Measuring artifacts: perplexity, KL divergence and top-1 agreement against a reference, speed and memory."""
