"""Train the digits CNN reproducibly and write weights.pt beside this file.

    python models/digits_cnn/train.py            # ~2 minutes on 2 cores
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import data  # noqa: E402  (the sample's own files, imported by path)
import model  # noqa: E402

EPOCHS = 12
BATCH_SIZE = 64
LEARNING_RATE = 2e-3
MAX_SHIFT_PX = 2  # random translation, in upsampled pixels


def shifted(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Roll each image by a random offset: cheap augmentation that helps generalisation."""
    out = np.empty_like(images)
    for i, image in enumerate(images):
        dy, dx = rng.integers(-MAX_SHIFT_PX, MAX_SHIFT_PX + 1, 2)
        out[i] = np.roll(image, (int(dy), int(dx)), axis=(-2, -1))
    return out


def accuracy(net: torch.nn.Module) -> float:
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for batch in data.evaluation(256):
            logits = net(torch.from_numpy(batch["image"]))
            correct += int((logits.argmax(1).numpy() == batch["labels"]).sum())
            total += len(batch["labels"])
    return correct / total


def main() -> None:
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    train_x, train_y, _, _ = data._split()
    net = model.create_model()
    optimizer = torch.optim.AdamW(net.parameters(), lr=LEARNING_RATE, weight_decay=1e-4)
    steps = EPOCHS * int(np.ceil(len(train_x) / BATCH_SIZE))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LEARNING_RATE, total_steps=steps)
    started = time.perf_counter()
    for epoch in range(EPOCHS):
        net.train()
        order = rng.permutation(len(train_x))
        for start in range(0, len(order), BATCH_SIZE):
            index = order[start:start + BATCH_SIZE]
            images = torch.from_numpy(shifted(train_x[index], rng))
            loss = torch.nn.functional.cross_entropy(net(images), torch.from_numpy(train_y[index]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        print(f"epoch {epoch + 1}/{EPOCHS}: loss {loss.item():.4f}", flush=True)
    test_accuracy = accuracy(net)
    temporary = HERE / "weights.pt.tmp"
    torch.save(net.state_dict(), temporary)
    os.replace(temporary, HERE / "weights.pt")
    print(f"test accuracy {test_accuracy:.4f} ({time.perf_counter() - started:.0f} s); wrote weights.pt")


if __name__ == "__main__":
    main()
