"""Digits data for the CNN sample: scikit-learn's bundled 8x8 digits (no download), upsampled
to 32x32 by repeating each pixel 4x4, scaled to [0, 1]. numpy only, so that any backend's
worker can read it. Fixed split: 20% stratified test set, random_state=0.

dlopt data sources: `models/digits_cnn/data.py:evaluation` (test split),
`models/digits_cnn/data.py:calibration` (300 training images), `...:training` (all of them).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

UPSAMPLE = 4
CALIBRATION_SAMPLES = 300
SPLIT_SEED = 0
SHUFFLE_SEED = 1


def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    images = np.kron(images, np.ones((UPSAMPLE, UPSAMPLE), dtype=np.float32))[:, None]
    labels = digits.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=0.2, stratify=labels, random_state=SPLIT_SEED
    )
    return train_x, train_y, test_x, test_y


def _batches(images: np.ndarray, labels: np.ndarray, batch_size: int) -> Iterator[dict]:
    for start in range(0, len(images), batch_size):
        yield {"image": images[start:start + batch_size],
               "labels": labels[start:start + batch_size]}


def evaluation(batch_size: int = 32) -> Iterator[dict]:
    """The held-out test split (360 images), in a fixed order."""
    _, _, test_x, test_y = _split()
    return _batches(test_x, test_y, batch_size)


def calibration(batch_size: int = 32) -> Iterator[dict]:
    """300 training images: calibration data for static quantization."""
    train_x, train_y, _, _ = _split()
    return _batches(train_x[:CALIBRATION_SAMPLES], train_y[:CALIBRATION_SAMPLES], batch_size)


def training(batch_size: int = 32) -> Iterator[dict]:
    """The whole training split (1437 images), shuffled with a fixed seed."""
    train_x, train_y, _, _ = _split()
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(train_x))
    return _batches(train_x[order], train_y[order], batch_size)
