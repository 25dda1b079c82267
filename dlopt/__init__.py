"""dlopt: export, quantize, prune, build, benchmark and release-gate trained models.

Importing this package is cheap on purpose: no torch, onnxruntime, openvino or tensorrt here.
"""

__version__ = "0.1.0"
