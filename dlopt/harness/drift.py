"""Drift metrics: how far a variant's outputs are from the FP32 reference outputs.

Written by hand because they are one line of numpy each and no maintained library offers this
set (cosine, relative L2, SQNR) on raw arrays without pulling in a framework.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# Values reduced at a time: bounds the float64 copies an update makes (8 MB each).
CHUNK_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class Drift:
    """Element-wise drift of one output against its reference."""

    max_abs_error: float
    mean_abs_error: float
    relative_l2_error: float
    cosine: float
    sqnr_db: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def drift(candidate: np.ndarray, reference: np.ndarray) -> Drift:
    """Drift of `candidate` against `reference` (same shape; compared in float64)."""
    if candidate.shape != reference.shape:
        raise ValueError(f"shape {candidate.shape} differs from reference {reference.shape}")
    streaming = StreamingDrift()
    streaming.update(candidate, reference)
    return streaming.result()


class StreamingDrift:
    """`drift` over many arrays without keeping them: sums of products, squares and absolute
    errors are added batch by batch, and `result()` is the drift of all of them concatenated.

    Cosine and SQNR need only the three dot products (candidate·reference, reference²,
    error²), so a layer's statistics over a whole data set take a few floats of memory.
    """

    def __init__(self) -> None:
        self.count = 0
        self.dot = 0.0  # candidate · reference
        self.candidate_energy = 0.0
        self.reference_energy = 0.0
        self.noise = 0.0  # |candidate - reference|²
        self.abs_error_sum = 0.0
        self.max_abs_error = 0.0
        self.nonfinite = 0  # NaN or inf elements in the candidate

    def update(self, candidate: np.ndarray, reference: np.ndarray) -> None:
        """Add one pair of arrays of the same size (their shapes may differ, e.g. flattened).
        Reduced in slices of CHUNK_ELEMENTS, so a large output (a language model's logits)
        never exists in float64 whole."""
        a = np.asarray(candidate).reshape(-1)
        b = np.asarray(reference).reshape(-1)
        if a.size != b.size:
            raise ValueError(f"{a.size} candidate values against {b.size} reference values")
        for start in range(0, a.size, CHUNK_ELEMENTS):
            self._update(a[start : start + CHUNK_ELEMENTS], b[start : start + CHUNK_ELEMENTS])

    def _update(self, candidate: np.ndarray, reference: np.ndarray) -> None:
        a = candidate.astype(np.float64)
        b = reference.astype(np.float64)
        finite = np.isfinite(a)
        if not finite.all():
            self.nonfinite += int(a.size - finite.sum())
        error = a - b
        abs_error = np.abs(error)
        self.count += a.size
        self.dot += _dot(a, b)
        self.candidate_energy += _dot(a, a)
        self.reference_energy += _dot(b, b)
        self.noise += _dot(error, error)
        self.abs_error_sum += float(abs_error.sum())
        self.max_abs_error = max(self.max_abs_error, float(abs_error.max()))

    def result(self) -> Drift:
        """The drift of everything added so far (that of two empty arrays when nothing was)."""
        if self.count == 0:
            return Drift(0.0, 0.0, 0.0, 1.0, math.inf)
        if self.nonfinite:
            nan = math.nan
            return Drift(nan, nan, nan, nan, nan)
        norms = math.sqrt(self.candidate_energy) * math.sqrt(self.reference_energy)
        if norms == 0:
            cosine = 1.0 if self.candidate_energy == 0 and self.reference_energy == 0 else 0.0
        else:
            cosine = min(1.0, max(-1.0, self.dot / norms))
        signal = self.reference_energy
        return Drift(
            max_abs_error=self.max_abs_error,
            mean_abs_error=self.abs_error_sum / self.count,
            relative_l2_error=_ratio(math.sqrt(self.noise), math.sqrt(signal)),
            cosine=cosine,
            sqnr_db=math.inf
            if self.noise == 0
            else (10 * math.log10(signal / self.noise) if signal > 0 else -math.inf),
        )


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    # einsum, not np.dot: BLAS's threaded dot spent 30-70 ms per 131k-element layer on these
    # shared 2-core machines (threads waiting for busy cores), einsum's own loop 1 ms.
    return float(np.einsum("i,i->", a, b))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two flattened arrays; 1.0 for two zero arrays."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norms == 0:
        return 1.0 if not a.any() and not b.any() else 0.0
    return float(np.clip(np.dot(a, b) / norms, -1.0, 1.0))


def _ratio(numerator: float, denominator: float) -> float:
    if denominator == 0:
        return 0.0 if numerator == 0 else math.inf
    return numerator / denominator


def within_tolerance(
    candidate: np.ndarray, reference: np.ndarray, atol: float, rtol: float
) -> bool:
    """numpy's allclose rule (|a - b| <= atol + rtol * |b|), with NaN never close."""
    if candidate.shape != reference.shape:
        return False
    if candidate.dtype.kind in "biu" and reference.dtype.kind in "biu":
        return bool(np.array_equal(candidate, reference))
    return bool(np.allclose(candidate, reference, atol=atol, rtol=rtol, equal_nan=False))


def top1_agreement(candidate_logits: np.ndarray, reference_logits: np.ndarray) -> float:
    """Share of samples whose arg-max class is the same in both ([N, C] logits)."""
    same = np.argmax(candidate_logits, axis=-1) == np.argmax(reference_logits, axis=-1)
    return float(same.mean()) if same.size else 1.0


def softmax_kl_divergence(candidate_logits: np.ndarray, reference_logits: np.ndarray) -> float:
    """Mean KL(reference || candidate) of the softmax over the last axis, in nats."""
    log_p = _log_softmax(np.asarray(reference_logits, dtype=np.float64))
    log_q = _log_softmax(np.asarray(candidate_logits, dtype=np.float64))
    kl = (np.exp(log_p) * (log_p - log_q)).sum(axis=-1)
    return float(max(kl.mean(), 0.0)) if kl.size else 0.0


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return np.asarray(shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True)))
