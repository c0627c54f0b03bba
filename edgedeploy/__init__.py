"""edgedeploy: take a trained PyTorch model to a verified edge artifact (TensorRT, OpenVINO, ONNX Runtime)."""

__version__ = "0.1.0"
