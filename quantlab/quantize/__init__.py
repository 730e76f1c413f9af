"""Static post-training quantization of main with ai-edge-quantizer: schemes, recipe JSON files, the quantize step."""
