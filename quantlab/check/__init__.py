"""`quantlab check`: rule checks on any .tflite, reported per op and tensor with the fix."""
