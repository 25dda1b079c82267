"""Multiply-accumulates of the matrix products, from their operand and output shapes.

Written by hand for ONNX and OpenVINO IR: neither onnx nor OpenVINO's Python API counts
operations (onnx shape inference gives the shapes, OpenVINO's `reshape` makes them static;
the counting is one line per op kind). Torch models use torch-pruning's op counter instead.
Only matrix products count (convolutions, MatMul, Gemm and their quantized forms); element-
wise ops, norms and softmax are a small share of the work and are left out, as in
torch-pruning's and fvcore's MAC counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Shape = Sequence[int]


def convolution_macs(output: Shape, weight: Shape) -> int:
    """Each output element sums (input channels per group x kernel) products.

    `weight` is [out, in/groups, k...] (ONNX Conv, OpenVINO Convolution) or, for OpenVINO's
    GroupConvolution, [groups, out/groups, in/groups, k...]: drop the group axis first.
    """
    return math.prod(output) * math.prod(weight[1:])


def transposed_convolution_macs(input_shape: Shape, weight: Shape) -> int:
    """Each input element is multiplied into (output channels per group x kernel) outputs;
    `weight` is [in, out/groups, k...] (ONNX ConvTranspose)."""
    return math.prod(input_shape) * math.prod(weight[1:])


def matmul_macs(output: Shape, inner: int) -> int:
    """Each output element of a (batched) matrix product sums `inner` products."""
    return math.prod(output) * inner
