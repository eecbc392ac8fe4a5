"""Exporters (onnx, tflite, openvino), artifact manifests and parity validation."""
