"""Precision stage: calibration data, the fp16-cast ONNX, INT8 (NNCF on OpenVINO, Q/DQ ONNX) and the keyed cache of
every calibration result. Importing this package imports no SDK."""
