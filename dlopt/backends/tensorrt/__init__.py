"""TensorRT: the backend that runs engines (`backend.py`), whether an engine may run here
(`engine_checks.py`), how to build one from an ONNX (`plan.py`: pure logic, CPU-testable) and
the CUDA plumbing (`cuda.py`). Nothing in this package imports tensorrt or CUDA at module level.
"""

INSTALL_HINT = "pip install 'dlopt[tensorrt]' on a machine with an NVIDIA GPU and CUDA"
