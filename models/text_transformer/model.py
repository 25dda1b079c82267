"""A small transformer encoder text classifier (the text sample).

Inputs `input_ids` and `attention_mask` (int64, [batch, seq], both axes dynamic, seq <= 128);
returns a dict `{"logits": [batch, 2]}` (dlopt names the output `logits`). Attention is written
with plain matmul and softmax, so both ONNX exporters and TorchScript tracing handle it, and
padded positions are masked out of attention and of the mean pooling.
Factory for dlopt: `models/text_transformer/model.py:create_model`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

VOCAB_SIZE = 1000
MAX_POSITIONS = 128
D_MODEL = 256
HEADS = 4
LAYERS = 3
FEED_FORWARD = 768
NUM_CLASSES = 2
# Default input specs for dlopt: token ids in the vocabulary, and an all-ones mask.
DLOPT_INPUTS = [
    f"input_ids:batch=1xseq=64:int64:1..{VOCAB_SIZE - 1}",
    "attention_mask:batch=1xseq=64:int64:1..1",
]
# Additive mask value: large enough to zero the softmax, small enough to stay finite in fp16.
MASKED = -1e4


class SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL)
        self.out = nn.Linear(D_MODEL, D_MODEL)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        head_dim = D_MODEL // HEADS
        qkv = self.qkv(x).reshape(batch, seq, 3, HEADS, head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv[0], qkv[1], qkv[2]
        scores = query @ key.transpose(-2, -1) / math.sqrt(head_dim) + additive_mask
        context = scores.softmax(-1) @ value
        return self.out(context.transpose(1, 2).reshape(batch, seq, D_MODEL))


class EncoderLayer(nn.Module):
    """Pre-LayerNorm encoder layer: attention then a GELU feed-forward, each residual."""

    def __init__(self) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(D_MODEL)
        self.attention = SelfAttention()
        self.norm2 = nn.LayerNorm(D_MODEL)
        self.feed_forward = nn.Sequential(
            nn.Linear(D_MODEL, FEED_FORWARD), nn.GELU(), nn.Linear(FEED_FORWARD, D_MODEL)
        )

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), additive_mask)
        return x + self.feed_forward(self.norm2(x))


class TextClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(VOCAB_SIZE, D_MODEL)
        self.position_embedding = nn.Embedding(MAX_POSITIONS, D_MODEL)
        self.layers = nn.ModuleList(EncoderLayer() for _ in range(LAYERS))
        self.norm = nn.LayerNorm(D_MODEL)
        self.classifier = nn.Linear(D_MODEL, NUM_CLASSES)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.token_embedding(input_ids) + self.position_embedding(positions)[None]
        mask = attention_mask.to(x.dtype)
        additive_mask = ((1.0 - mask) * MASKED)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, additive_mask)
        x = self.norm(x)
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        return {"logits": self.classifier(pooled)}


def create_model() -> nn.Module:
    """The untrained network; load `weights.pt` beside this file with dlopt's --weights."""
    return TextClassifier()
