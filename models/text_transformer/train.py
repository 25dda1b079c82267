"""Train the text transformer reproducibly and write weights.pt beside this file.

    python models/text_transformer/train.py
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

EPOCHS = 3
BATCH_SIZE = 64
LEARNING_RATE = 1e-3


def accuracy(net: torch.nn.Module) -> float:
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for batch in data.evaluation(200):
            logits = net(torch.from_numpy(batch["input_ids"]),
                         torch.from_numpy(batch["attention_mask"]))["logits"]
            correct += int((logits.argmax(1).numpy() == batch["labels"]).sum())
            total += len(batch["labels"])
    return correct / total


def main() -> None:
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)
    net = model.create_model()
    optimizer = torch.optim.AdamW(net.parameters(), lr=LEARNING_RATE, weight_decay=0.01)
    steps = EPOCHS * int(np.ceil(data.SIZES["training"] / BATCH_SIZE))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, LEARNING_RATE, total_steps=steps, pct_start=0.1
    )
    started = time.perf_counter()
    for epoch in range(EPOCHS):
        net.train()
        for step, batch in enumerate(data.training(BATCH_SIZE, epoch=epoch)):
            logits = net(torch.from_numpy(batch["input_ids"]),
                         torch.from_numpy(batch["attention_mask"]))["logits"]
            loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(batch["labels"]))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            if step % 50 == 0:
                print(f"epoch {epoch + 1} step {step}: loss {loss.item():.4f} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
    test_accuracy = accuracy(net)
    temporary = HERE / "weights.pt.tmp"
    torch.save(net.state_dict(), temporary)
    os.replace(temporary, HERE / "weights.pt")
    print(f"test accuracy {test_accuracy:.4f} ({time.perf_counter() - started:.0f} s); wrote weights.pt")


if __name__ == "__main__":
    main()
