"""What every ONNX Runtime candidate of one `dlopt quantize` shares (`OrtJob`), each part made
once when first needed: ORT's pre-processing, NNCF's transformer pass, the calibration stream,
the evaluation set. Its own module so that every candidate module can take one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlopt.optimize.quantize.calibration import Calibration, open_calibration
from dlopt.optimize.quantize.check import reference_set
from dlopt.optimize.quantize.evaluation import EvaluationSet
from dlopt.optimize.quantize.onnxruntime import nodes_to_exclude, preprocess
from dlopt.optimize.quantize.options import QuantizeError
from dlopt.specs import TensorSpec

if TYPE_CHECKING:
    from dlopt.optimize.quantize.options import QuantizeOptions


@dataclass
class OrtJob:
    """The shared state of one `dlopt quantize`'s ONNX Runtime candidates (module docstring)."""

    parent: Path
    specs: Sequence[TensorSpec]
    staging: Path
    options: QuantizeOptions
    say: Callable[[str], None]
    _prepared: tuple[Path, str] | None = None
    _calibration: Calibration | None = None
    _evaluation: EvaluationSet | None = None
    _attention: bool | None = None
    _nncf: tuple[Path, dict[str, Any]] | None = None
    _nncf_failure: QuantizeError | None = None
    # False once another candidate met the budget as it was made (--mode auto): a fallback,
    # which only makes a model slower, is then not worth its time.
    fallback: bool = True

    def prepared(self) -> tuple[Path, str]:
        if self._prepared is None:
            self.say("pre-processing (shape inference, optimization)")
            self._prepared = preprocess(self.parent, self.staging / "prepared.onnx")
        return self._prepared

    def calibration(self) -> Calibration:
        if self._calibration is None:
            self._calibration = open_calibration(
                self.options.calibration,
                self.specs,
                self.options.calibration_size,
                self.options.seed,
            )
        return self._calibration

    def evaluation(self) -> EvaluationSet:
        if self._evaluation is None:
            self.say("running the FP32 parent on the evaluation data")
            self._evaluation = reference_set(self.parent, self.specs, self.options)
        return self._evaluation

    def attention(self) -> bool:
        """Whether static INT8 takes the transformer recipe (onnx_nncf.py)."""
        if self._attention is None:
            from dlopt.optimize.quantize.onnx_nncf import has_attention

            wanted = self.options.model_type
            self._attention = self.options.target == "onnxruntime" and (
                wanted == "transformer" or (wanted == "auto" and has_attention(self.parent))
            )
        return self._attention

    def nncf_transformer(self) -> tuple[Path, dict[str, Any]]:
        """NNCF's transformer scheme on the parent (onnx_nncf.py), run once: the static
        candidate and the SmoothQuant + dynamic one both start from it. Returns the QDQ model
        in the staging folder and the record of the run. A failure is raised again, not rerun."""
        if self._nncf_failure is not None:
            raise self._nncf_failure
        if self._nncf is None:
            from dlopt.optimize.quantize.onnx_nncf import nncf_transformer_int8

            calibration = self.calibration()
            excluded = nodes_to_exclude(self.parent, self.options.exclude)
            quantized = self.staging / "nncf-transformer.onnx"
            self.say(f"quantizing with NNCF's transformer scheme on {calibration.samples} samples")
            try:
                record = nncf_transformer_int8(self.parent, quantized, calibration, excluded)
            except QuantizeError as error:
                self._nncf_failure = error
                raise
            self._nncf = (quantized, record)
        return self._nncf
