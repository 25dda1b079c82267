"""The wrappers an `hf:` source is exported through: named tensor outputs, no loss, no cache.
(Imports torch: only `dlopt.hf_source` imports this, inside a function.)"""

from __future__ import annotations

from typing import Any

import torch


class MeanPooled(torch.nn.Module):
    """Last hidden state averaged over the real tokens, as sentence-transformers pools."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        # Named as sentence-transformers names it; a plain "embedding" would clash with the
        # name the exporter gives the embedding lookup's value.
        return {"sentence_embedding": pooled}


class Logits(torch.nn.Module):
    """The head's logits only (no loss, no key/value cache)."""

    def __init__(self, model: torch.nn.Module, causal: bool) -> None:
        super().__init__()
        self.model = model
        self.causal = causal

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        extra: dict[str, Any] = {"use_cache": False} if self.causal else {}
        output = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return {"logits": output.logits}
