"""Where a model comes from: a factory, an ONNX file, or a model named in the package it was trained with (timm,
torchvision, Ultralytics, Hugging Face transformers: edgedeploy.sources.families)."""
