"""scikit-learn's bundled diabetes data (442 patients, 10 features; no download), standardized
with the training split's statistics. Fixed split: 20% test, random_state=0. numpy only.

dlopt data sources: `models/diabetes_mlp/data.py:evaluation`, `...:calibration`, `...:training`.
Labels are float32 targets (a regression task).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    features, target = load_diabetes(return_X_y=True, scaled=False)
    train_x, test_x, train_y, test_y = train_test_split(
        features, target, test_size=0.2, random_state=0
    )
    mean, std = train_x.mean(0), train_x.std(0)
    standardize = lambda x: ((x - mean) / std).astype(np.float32)  # noqa: E731
    return standardize(train_x), train_y.astype(np.float32), standardize(test_x), test_y.astype(
        np.float32
    )


def _batches(x: np.ndarray, y: np.ndarray, batch_size: int) -> Iterator[dict]:
    for start in range(0, len(x), batch_size):
        yield {"features": x[start:start + batch_size], "labels": y[start:start + batch_size]}


def evaluation(batch_size: int = 32) -> Iterator[dict]:
    """The 89-patient test split."""
    _, _, test_x, test_y = _split()
    return _batches(test_x, test_y, batch_size)


def calibration(batch_size: int = 32) -> Iterator[dict]:
    """200 training patients."""
    train_x, train_y, _, _ = _split()
    return _batches(train_x[:200], train_y[:200], batch_size)


def training(batch_size: int = 32) -> Iterator[dict]:
    """The 353-patient training split, shuffled with a fixed seed."""
    train_x, train_y, _, _ = _split()
    order = np.random.default_rng(1).permutation(len(train_x))
    return _batches(train_x[order], train_y[order], batch_size)
