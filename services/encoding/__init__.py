"""SPLADE encoders: PyTorch for training/export, ONNX Runtime for serving and bulk encoding."""
