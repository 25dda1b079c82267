"""`dlopt diff`: compare two models layer by layer on the same inputs.

`graph.py` reads each model's layers (ONNX or OpenVINO IR, quantization nodes folded away),
`match.py` pairs their tensors by name, `expose.py` makes temporary copies that return those
tensors, `run.py` runs both through the backends' sessions and folds each batch into per-layer
streaming statistics, and `ranking.py` finds the first layer beyond the tolerance and the
layers that add the most error.
"""

from dlopt.harness.layerdiff.options import DiffOptions, ModelMismatchError
from dlopt.harness.layerdiff.run import LayerDiff, diff_models

__all__ = ["DiffOptions", "LayerDiff", "ModelMismatchError", "diff_models"]
