"""What `dlopt prune` can be asked for (validated options) and what it reports back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dlopt.errors import PruneError

if TYPE_CHECKING:
    from dlopt.optimize.export.options import ExportResult
    from dlopt.optimize.prune.finetune import FinetuneReport
    from dlopt.optimize.prune.stats import ModelStats

METHODS = ("structured", "unstructured", "2:4")
TASKS = ("auto", "classification", "regression")
IMPORTANCES = ("l1", "l2", "taylor")
DEFAULT_AMOUNT = 0.3
TWO_FOUR_AMOUNT = 0.5
Progress = Callable[[str], None]

UNSTRUCTURED_NOTE = (
    "unstructured sparsity: the weights are zeros in dense tensors, so dense runtimes (ONNX "
    "Runtime, OpenVINO, TensorRT without sparsity) run this model no faster than the original; "
    "it only compresses better"
)
TWO_FOUR_NOTE = (
    "2:4 sparsity runs faster only on NVIDIA GPUs with sparse tensor cores (Ampere or newer) "
    "through TensorRT with sparse weights enabled (BuilderFlag.SPARSE_WEIGHTS, trtexec "
    "--sparsity=enable); elsewhere it runs as fast as the dense model"
)


@dataclass(frozen=True)
class PruneOptions:
    """How to prune and recover. Validated on creation (PruneError naming field and value).

    `amount`: fraction of channels (structured) or of weights (unstructured) to remove; None
    means 0.3, or 0.5 for 2:4, which is the only amount 2:4 allows. `ignore`: module names
    (as in `model.named_modules()`) never pruned, with everything inside them. `finetune`:
    a labelled data source (see `dlopt.data`) to recover accuracy on; `evaluate`: the data the
    accuracy is measured on (default: the fine-tuning data).
    """

    # The fields with a fixed set of values: checked here, listed in the config schema.
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "method": METHODS,
        "importance": IMPORTANCES,
        "task": TASKS,
    }

    method: str = "structured"
    amount: float | None = None
    importance: str = "l2"
    ignore: tuple[str, ...] = ()
    round_to: int | None = None
    keep_output_layers: bool = True
    finetune: str | None = None
    evaluate: str | None = None
    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 32
    task: str = "auto"
    seed: int = 0
    taylor_batches: int = 4
    threads: int | None = None

    def __post_init__(self) -> None:
        for name, allowed in self.CHOICES.items():
            _check_choice(name, getattr(self, name), allowed)
        object.__setattr__(self, "ignore", tuple(self.ignore))
        amount = self.amount
        if amount is not None and not (isinstance(amount, (int, float)) and 0 < amount < 1):
            raise PruneError(
                f"amount {amount!r} is outside (0, 1)",
                "give the fraction to remove, e.g. --amount 0.3",
            )
        if self.method == "2:4" and amount is not None and amount != TWO_FOUR_AMOUNT:
            raise PruneError(
                f"amount {amount} does not fit method 2:4, which always removes 0.5",
                "drop --amount, or use --method unstructured for another fraction",
            )
        if self.importance == "taylor" and self.method != "structured":
            raise PruneError(
                f"importance taylor works only with method structured, not {self.method!r}",
                "use --importance l1 or l2",
            )
        if self.importance == "taylor" and self.finetune is None:
            raise PruneError(
                "importance taylor needs gradients from labelled data",
                "pass --finetune DATA (its first batches give the gradients), or use l1 or l2",
            )
        for name, value, low in (
            ("round_to", self.round_to, 1),
            ("epochs", self.epochs, 1),
            ("batch_size", self.batch_size, 1),
            ("taylor_batches", self.taylor_batches, 1),
            ("threads", self.threads, 1),
        ):
            if value is not None and (not isinstance(value, int) or value < low):
                raise PruneError(f"{name} {value!r} must be an integer of at least {low}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise PruneError(f"lr {self.lr!r} must be a positive number", "e.g. --lr 1e-3")

    @property
    def effective_amount(self) -> float:
        if self.method == "2:4":
            return TWO_FOUR_AMOUNT
        return float(self.amount) if self.amount is not None else DEFAULT_AMOUNT


@dataclass
class AccuracyReport:
    """The task metric before pruning, after pruning and after fine-tuning."""

    metric: str
    data: str
    samples: int
    before: float
    after_pruning: float
    after_finetune: float | None = None


@dataclass
class PruneResult:
    """The pruned artifacts and what pruning changed."""

    options: PruneOptions
    output_dir: Path
    artifacts: list[ExportResult]
    before: ModelStats
    after: ModelStats
    task: str | None = None
    accuracy: AccuracyReport | None = None
    finetune: FinetuneReport | None = None
    kept_layers: list[str] = field(default_factory=list)
    skipped_layers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pruned_layers_sparsity: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report as stored in the manifests' recipe."""
        return {
            "step": "prune",
            "options": asdict(self.options),
            "amount": self.options.effective_amount,
            "task": self.task,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "accuracy": asdict(self.accuracy) if self.accuracy else None,
            "finetune": asdict(self.finetune) if self.finetune else None,
            "kept_layers": self.kept_layers,
            "skipped_layers": self.skipped_layers,
            "pruned_layers_sparsity": round(self.pruned_layers_sparsity, 6),
            "notes": self.notes,
        }


def _check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise PruneError(f"unknown {name} {value!r}", f"use one of {', '.join(allowed)}")
