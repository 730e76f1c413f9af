"""Qualcomm NPU (QNN HTP) ahead-of-time compilation through LiteRT's Qualcomm compiler plugin."""
