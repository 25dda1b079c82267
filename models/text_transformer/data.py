"""A learnable synthetic sentiment task for the text sample, generated deterministically.

Vocabulary of 1000 ids: 0 is padding, 10-59 are "positive" words, 60-109 "negative" words,
110-119 negators ("not") that flip the polarity of the next word, everything else neutral.
Label 1 when the (negation-aware) polarity sum is positive, else 0; sums of zero are
re-drawn. Lengths vary from 16 to 64 tokens, padded to the longest in the batch; the mask
marks real tokens. numpy only.

dlopt data sources: `models/text_transformer/data.py:evaluation` (1000 sequences),
`...:calibration` (300), `...:training` (10000 a call; `epoch=N` draws a fresh set).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

VOCAB_SIZE = 1000
POSITIVE = range(10, 60)
NEGATIVE = range(60, 110)
NEGATORS = range(110, 120)
NEUTRAL_LOW = 120
MIN_LENGTH, MAX_LENGTH = 16, 64
SEEDS = {"training": 11, "calibration": 12, "evaluation": 13}
SIZES = {"training": 10000, "calibration": 300, "evaluation": 1000}


def polarity_label(tokens: np.ndarray) -> int:
    """1 if the negation-aware polarity sum is positive, 0 if negative, -1 if zero."""
    total, flip = 0, 1
    for token in tokens:
        if token in NEGATORS:
            flip = -1
            continue
        if token in POSITIVE:
            total += flip
        elif token in NEGATIVE:
            total -= flip
        flip = 1
    return 1 if total > 0 else 0 if total < 0 else -1


def _sequence(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    while True:
        length = int(rng.integers(MIN_LENGTH, MAX_LENGTH + 1))
        kinds = rng.choice(4, size=length, p=[0.62, 0.16, 0.16, 0.06])
        tokens = np.where(
            kinds == 0, rng.integers(NEUTRAL_LOW, VOCAB_SIZE, length),
            np.where(kinds == 1, rng.integers(10, 60, length),
                     np.where(kinds == 2, rng.integers(60, 110, length),
                              rng.integers(110, 120, length))),
        )
        label = polarity_label(tokens)
        if label >= 0:
            return tokens.astype(np.int64), label


def _batches(split: str, batch_size: int, epoch: int = 0) -> Iterator[dict]:
    rng = np.random.default_rng([SEEDS[split], epoch])
    count = SIZES[split]
    for start in range(0, count, batch_size):
        pairs = [_sequence(rng) for _ in range(min(batch_size, count - start))]
        width = max(len(tokens) for tokens, _ in pairs)
        input_ids = np.zeros((len(pairs), width), dtype=np.int64)
        attention_mask = np.zeros((len(pairs), width), dtype=np.int64)
        for row, (tokens, _) in enumerate(pairs):
            input_ids[row, : len(tokens)] = tokens
            attention_mask[row, : len(tokens)] = 1
        yield {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": np.array([label for _, label in pairs], dtype=np.int64),
        }


def evaluation(batch_size: int = 32) -> Iterator[dict]:
    """1000 held-out sequences."""
    return _batches("evaluation", batch_size)


def calibration(batch_size: int = 32) -> Iterator[dict]:
    """300 sequences for static-quantization calibration."""
    return _batches("calibration", batch_size)


def training(batch_size: int = 32, epoch: int = 0) -> Iterator[dict]:
    """10000 training sequences; each epoch draws a fresh set (a fixed one per epoch number),
    so the model learns the rule instead of memorising sequences."""
    return _batches("training", batch_size, epoch)
