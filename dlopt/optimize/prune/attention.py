"""Structured pruning's two model-specific concerns: Hugging Face attention, whose heads
torch-pruning prunes only when told their projections and head counts, and naming the layer
where torch-pruning's dependency graph gives up.

Hugging Face attention modules keep the head count and size as plain attributes and reshape
with them (`view(batch, seq, -1, self.attention_head_size)`), so torch-pruning, which sees
only the Linear layers, must be told which projections belong to one attention (its
`num_heads` argument, as its Hugging Face examples do) and the attributes updated afterwards.
Whole heads are pruned (`prune_num_heads`): the head size stays, so the reshapes still fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

# (query, key, value) projection names and the head-count attribute, per naming family:
# BERT/RoBERTa/ALBERT/ViT-HF, DistilBERT, BART/OPT/Llama-style.
_PROJECTIONS = (
    ("query", "key", "value"),
    ("q_lin", "k_lin", "v_lin"),
    ("q_proj", "k_proj", "v_proj"),
)
_HEAD_COUNTS = ("num_attention_heads", "n_heads", "num_heads")
_HEAD_SIZES = ("attention_head_size", "head_dim")


@dataclass
class HfAttention:
    """One attention module: its q/k/v projections, its head count and head size."""

    module: nn.Module
    projections: tuple[nn.Linear, nn.Linear, nn.Linear]
    heads: int
    head_size: int
    count_attribute: str


def find_hf_attention(model: nn.Module) -> list[HfAttention]:
    """Every attention module with q/k/v Linear projections and a head-count attribute."""
    found = []
    for module in model.modules():
        if isinstance(module, nn.MultiheadAttention):
            continue  # torch-pruning prunes these itself
        count_attribute = next(
            (a for a in _HEAD_COUNTS if isinstance(getattr(module, a, None), int)), None
        )
        if count_attribute is None:
            continue
        for names in _PROJECTIONS:
            layers = [getattr(module, name, None) for name in names]
            linears = [layer for layer in layers if isinstance(layer, nn.Linear)]
            if len(linears) == 3:
                heads = int(getattr(module, count_attribute))
                query = linears[0]
                if heads > 0 and query.out_features % heads == 0:
                    found.append(
                        HfAttention(
                            module,
                            (linears[0], linears[1], linears[2]),
                            heads,
                            query.out_features // heads,
                            count_attribute,
                        )
                    )
                break
    return found


def update_hf_attention(attentions: list[HfAttention]) -> None:
    """After pruning: the head count (and the all-heads width) from the projections' new size."""
    for attention in attentions:
        width = attention.projections[0].out_features
        heads = width // attention.head_size
        setattr(attention.module, attention.count_attribute, heads)
        if isinstance(getattr(attention.module, "all_head_size", None), int):
            setattr(attention.module, "all_head_size", width)  # noqa: B010
        if attention.count_attribute == "n_heads" and isinstance(
            getattr(attention.module, "dim", None), int
        ):
            setattr(attention.module, "dim", width)  # noqa: B010 (DistilBERT's width)


def layer_at_failure(error: BaseException, model: nn.Module) -> str | None:
    """The model layer nearest before the graph node torch-pruning failed on, found in the
    failing frames' locals (its `Node`s) and walked back through the node's inputs."""
    names = {id(layer): name for name, layer in model.named_modules() if name}
    traceback = error.__traceback__
    nodes: list[Any] = []
    while traceback is not None:
        for value in traceback.tb_frame.f_locals.values():
            if type(value).__name__ == "Node" and hasattr(value, "inputs"):
                nodes.append(value)
        traceback = traceback.tb_next
    for start in reversed(nodes):  # the innermost frame first
        pending, seen = [start], set()
        while pending:
            node = pending.pop(0)
            if id(node) in seen:
                continue
            seen.add(id(node))
            name = names.get(id(getattr(node, "module", None)))
            if name:
                return name
            pending.extend(getattr(node, "inputs", []))
    return None
