"""The evaluation data quantization is checked on, with the FP32 parent's outputs, in bounded
memory whatever the model's output size and the number of samples.

The reference outputs of a small model are kept (up to MAX_CACHED_BYTES with the inputs,
float32 at most) so that each drift measurement runs only the candidate. Past that (GPT-2's
logits are 12.9 MB a sample: 300 samples took 7.2 GiB in float64 before), nothing is kept and
every measurement streams the data again, running the parent beside the candidate batch by
batch and reducing both as they come (harness.drift.StreamingDrift, agreement and accuracy
counts). Batches are split so that one call's outputs stay under MAX_CALL_OUTPUT_BYTES.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from dlopt import progress
from dlopt.errors import ConfigError

if TYPE_CHECKING:
    from dlopt.data import Batch
    from dlopt.optimize.quantize.budget import DriftBudget

RunFn = Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]
MAX_CACHED_BYTES = 256 * 2**20
MAX_CALL_OUTPUT_BYTES = 64 * 2**20
# Output names that mark class scores (compared lower-case, as substrings).
CLASSIFIER_OUTPUT_WORDS = ("logit", "prob", "class", "score")


class Data(Protocol):
    """A re-iterable stream of batches with a description (dlopt.data.DataSource)."""

    description: str

    def __iter__(self) -> Iterator[Batch]: ...


@dataclass
class EvaluationChunk:
    """Some rows of the evaluation data with the FP32 parent's outputs on them."""

    feed: dict[str, np.ndarray]
    reference: list[np.ndarray]  # one array per output, in output order
    labels: np.ndarray | None


@dataclass
class EvaluationSet:
    """Evaluation data with the FP32 parent's outputs on it; see the module docstring."""

    data: Data
    reference_run: RunFn
    description: str
    sha256: str
    samples: int
    output_names: list[str] = field(default_factory=list)
    classifier_outputs: list[bool] = field(default_factory=list)
    scores_outputs: list[bool] = field(default_factory=list)  # [N, C>=2] floats
    has_labels: bool = False
    random_inputs: bool = False  # no data was given: drift on random inputs says little
    rows_per_call: int | None = None  # None: batches as the data gives them
    cached: list[EvaluationChunk] | None = None

    @property
    def streamed(self) -> bool:
        return self.cached is None

    def chunks(self) -> Iterator[EvaluationChunk]:
        """The data with the reference outputs: kept ones, or computed again batch by batch."""
        if self.cached is not None:
            yield from self.cached
            return
        for batch in self.data:
            for feed, labels in _split(batch, self.rows_per_call):
                yield EvaluationChunk(feed, _stored(self.reference_run(feed)), labels)

    def head(self, limit: int) -> tuple[list[dict[str, np.ndarray]], list[np.ndarray]]:
        """Feeds of the first `limit` samples (fewer when their first output would pass
        MAX_CALL_OUTPUT_BYTES) and the parent's first output on each: enough to rank nodes."""
        feeds: list[dict[str, np.ndarray]] = []
        references: list[np.ndarray] = []
        count = size = 0
        for chunk in self.chunks():
            rows = _rows(chunk.feed)
            take = min(rows, limit - count)
            per_row = chunk.reference[0].nbytes / max(rows, 1)
            if feeds and size + per_row * take > MAX_CALL_OUTPUT_BYTES:
                take = int((MAX_CALL_OUTPUT_BYTES - size) // max(per_row, 1))
            if take <= 0:
                break
            feeds.append({name: value[:take] for name, value in chunk.feed.items()})
            references.append(chunk.reference[0][:take])
            count += take
            size += int(per_row * take)
            if count >= limit:
                break
        return feeds, references


def evaluation_set(data: Data, reference: RunFn, output_names: Sequence[str] = ()) -> EvaluationSet:
    """One pass over `data`: its sha256 and size, which outputs are class scores, and the
    parent's outputs while they fit in MAX_CACHED_BYTES. `output_names`: the parent's, in
    order (they tell class scores from embeddings)."""
    from dlopt.data import SYNTHETIC, hash_batch

    digest = hashlib.sha256()
    cache: list[EvaluationChunk] | None = []
    cached_bytes = samples = 0
    rows_per_call: int | None = None
    first: list[np.ndarray] | None = None
    labels_seen: list[tuple[str, int, int]] = []  # (dtype kind, min, max) per labelled batch
    with progress.step("FP32 reference outputs", getattr(data, "limit", None)) as advance:
        for batch in data:
            hash_batch(digest, batch)
            samples += batch.size
            if batch.labels is not None and batch.labels.size:
                labels = np.asarray(batch.labels)
                kind = labels.dtype.kind
                low, high = (int(labels.min()), int(labels.max())) if kind in "biu" else (0, 0)
                labels_seen.append((kind, low, high))
            if first is None:
                rows_per_call = _rows_per_call(batch, reference, data)
            if cache is not None:
                for feed, labels_part in _split(batch, rows_per_call):
                    outputs = _stored(reference(feed))
                    first = first if first is not None else outputs
                    cached_bytes += sum(o.nbytes for o in outputs)
                    cached_bytes += sum(v.nbytes for v in feed.values())
                    cache.append(EvaluationChunk(feed, outputs, labels_part))
                if cached_bytes > MAX_CACHED_BYTES:
                    cache = None  # too big to keep: measurements stream the data again
            advance(batch.size)
    if first is None:
        raise ConfigError(f"evaluation data {data.description} yielded no samples")
    names = list(output_names)
    has_labels = bool(labels_seen)
    class_ids = has_labels and all(kind in "biu" and low >= 0 for kind, low, _ in labels_seen)
    top_label = max((high for _, _, high in labels_seen), default=-1)
    scores = [_is_scores(output) for output in first]
    classifiers = [
        scores[index]
        and (
            (index == 0 and class_ids and top_label < output.shape[1])
            or _named_scores(names[index] if index < len(names) else None)
        )
        for index, output in enumerate(first)
    ]
    return EvaluationSet(
        data=data,
        reference_run=reference,
        description=data.description,
        sha256=digest.hexdigest(),
        samples=samples,
        output_names=names,
        classifier_outputs=classifiers,
        scores_outputs=scores,
        has_labels=has_labels,
        random_inputs=data.description.startswith(SYNTHETIC),
        rows_per_call=rows_per_call,
        cached=cache,
    )


def is_classifier(reference: np.ndarray, name: str | None, labels: np.ndarray | None) -> bool:
    """Whether an output holds class scores: [N, C] floats, and labels that are class ids
    below C or a name that says so (logits, probabilities, scores)."""
    if not _is_scores(reference):
        return False
    ids = labels is not None and labels.dtype.kind in "biu" and labels.size > 0
    if ids and int(labels.min()) >= 0 and int(labels.max()) < int(reference.shape[1]):  # type: ignore[union-attr]
        return True
    return _named_scores(name)


def measure_drift(
    run: RunFn, evaluation: EvaluationSet, budgets: Sequence[DriftBudget] = ()
) -> dict[str, float]:
    """Drift of `run` from the reference on the evaluation set: the worst over outputs, with
    top-1 agreement on classifier outputs (or any [N, C] output when a budget asks for it),
    plus accuracy and accuracy_drop when the data has labels and the first output is [N, C]
    scores. Streams: memory holds one call's outputs.

    Raises ConfigError when a budget asks for accuracy_drop and that cannot be measured.
    """
    from dlopt.harness.drift import StreamingDrift

    asked_top1 = any(b.metric == "top1_agreement" and not b.classifiers_only for b in budgets)
    outputs = len(evaluation.scores_outputs)
    streams = [StreamingDrift() for _ in range(outputs)]
    with_top1 = [
        evaluation.classifier_outputs[i] or (asked_top1 and evaluation.scores_outputs[i])
        for i in range(outputs)
    ]
    agreeing = [0] * outputs
    rows = correct_reference = correct_candidate = 0
    with progress.step("drift against FP32", evaluation.samples) as advance:
        for chunk in evaluation.chunks():
            produced = run(chunk.feed)
            for index, (candidate, reference) in enumerate(
                zip(produced, chunk.reference, strict=True)
            ):
                streams[index].update(candidate, reference)
                if with_top1[index]:
                    same = np.argmax(candidate, -1) == np.argmax(reference, -1)
                    agreeing[index] += int(same.sum())
            size = _rows(chunk.feed)
            rows += size
            if chunk.labels is not None and evaluation.scores_outputs[0]:
                labels = np.asarray(chunk.labels).reshape(-1)
                correct_reference += int((np.argmax(chunk.reference[0], -1) == labels).sum())
                correct_candidate += int((np.argmax(produced[0], -1) == labels).sum())
            advance(size)
    result: dict[str, float] = {}
    worst = {"cosine": min, "sqnr_db": min, "relative_l2_error": max, "max_abs_error": max}
    for stream in streams:
        measured = stream.result()
        for name, pick in worst.items():
            value = float(getattr(measured, name))
            result[name] = pick(result[name], value) if name in result else value
    for index in range(outputs):
        if with_top1[index]:
            agreement = agreeing[index] / rows if rows else 1.0
            result["top1_agreement"] = min(result.get("top1_agreement", 1.0), agreement)
    if evaluation.has_labels and evaluation.scores_outputs[0] and rows:
        before, after = correct_reference / rows, correct_candidate / rows
        result.update(accuracy_fp32=before, accuracy=after, accuracy_drop=before - after)
    if any(b.metric == "accuracy_drop" for b in budgets) and "accuracy_drop" not in result:
        raise ConfigError(
            f"--max-drift accuracy_drop needs labels and class scores; {evaluation.description} "
            "gives none",
            "give --eval data with labels, or a drift budget such as cosine=0.995",
        )
    return result


Item = tuple[dict[str, np.ndarray], list[np.ndarray], "np.ndarray | None"]


def per_sample(evaluation: EvaluationSet) -> Iterable[Item]:
    """A re-iterable of (batch-1 feed, reference output rows, label rows) per sample."""

    class Items:
        def __iter__(self) -> Iterator[Item]:
            for chunk in evaluation.chunks():
                for row in range(_rows(chunk.feed)):
                    one = {name: value[row : row + 1] for name, value in chunk.feed.items()}
                    reference = [output[row : row + 1] for output in chunk.reference]
                    labels = None if chunk.labels is None else chunk.labels[row : row + 1]
                    yield one, reference, labels

        def __len__(self) -> int:
            return evaluation.samples

    return Items()


def _rows_per_call(batch: Batch, reference: RunFn, data: Data) -> int | None:
    """Rows per call that keep one call's outputs under MAX_CALL_OUTPUT_BYTES (None: the
    data's batches as they are, e.g. for a model with a static batch size)."""
    specs = getattr(data, "specs", [])
    if batch.size <= 1 or any(spec.dims and not spec.dims[0].is_dynamic for spec in specs):
        return None
    one = {name: value[:1] for name, value in batch.inputs.items()}
    per_row = sum(np.asarray(output).nbytes for output in reference(one))
    rows = max(1, MAX_CALL_OUTPUT_BYTES // max(per_row, 1))
    return None if rows >= batch.size else int(rows)


def _split(
    batch: Batch, rows: int | None
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray | None]]:
    if rows is None or rows >= batch.size:
        yield dict(batch.inputs), batch.labels
        return
    for start in range(0, batch.size, rows):
        part = {name: value[start : start + rows] for name, value in batch.inputs.items()}
        yield part, None if batch.labels is None else batch.labels[start : start + rows]


def _stored(outputs: Sequence[Any]) -> list[np.ndarray]:
    """Outputs as kept: float32 at most (a float64 output halves in size, loses nothing that
    drift budgets resolve)."""
    kept = []
    for output in outputs:
        array = np.asarray(output)
        kept.append(array.astype(np.float32) if array.dtype == np.float64 else array)
    return kept


def _rows(feed: Mapping[str, np.ndarray]) -> int:
    return int(next(iter(feed.values())).shape[0]) if feed else 0


def _is_scores(output: np.ndarray) -> bool:
    from dlopt.harness.metrics import is_classifier_output

    return is_classifier_output(np.asarray(output))


def _named_scores(name: str | None) -> bool:
    return bool(name) and any(word in str(name).lower() for word in CLASSIFIER_OUTPUT_WORDS)
