"""`text:FILE[@TOKENIZER]` data: sentences tokenized with the model's tokenizer.

FILE is a `.txt` (one sample a line; blank lines skipped) or a `.jsonl` (one JSON object a
line: the text under `text` or `sentence`, an optional integer class under `label` or
`labels`). Each sample is tokenized with the Hugging Face tokenizer of TOKENIZER (a model
folder), truncated and padded to the model's sequence length (the `input_ids` spec's static
length or its example size), and fed as the inputs the model takes (`input_ids`,
`attention_mask`, `token_type_ids`). Without `@TOKENIZER`, `resolve_tokenizer` finds it from
the model: an `hf:` source, or a file exported from one (its manifest names the source).
Needs the `dlopt[hf]` extra.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlopt.errors import DataError, DloptError
from dlopt.specs import TensorSpec

PREFIX = "text:"
TEXT_KEYS = ("text", "sentence")
LABEL_KEYS = ("label", "labels")
LINES_PER_CHUNK = 32
TEXT_HELP = (
    "text data is text:FILE.txt (one sample a line) or text:FILE.jsonl (objects with 'text' "
    "and an optional integer 'label'), with @MODEL_FOLDER for the tokenizer when the model "
    "does not name it"
)


def split_text_source(source: str) -> tuple[Path, Path | None]:
    """`text:FILE[@TOKENIZER]` -> (file, tokenizer folder or None); raises DataError."""
    body = source[len(PREFIX) :]
    file_text, at, tokenizer_text = body.rpartition("@")
    if not at or not Path(tokenizer_text).is_dir():
        file_text, tokenizer_text = body, ""
    path = Path(file_text)
    if not path.is_file():
        raise DataError(f"text data {file_text!r} is not a file (from {source!r})", TEXT_HELP)
    if path.suffix not in (".txt", ".jsonl"):
        raise DataError(f"text data {path} is not a .txt or .jsonl file", TEXT_HELP)
    return path, Path(tokenizer_text) if tokenizer_text else None


def resolve_tokenizer(data: str | None, model: str | None) -> str | None:
    """`text:FILE` with the model's tokenizer folder appended (`text:FILE@FOLDER`); any other
    data source unchanged. The folder comes from an `hf:` model source or from the manifest of
    a model exported from one; raises DataError when neither names one."""
    if data is None or not data.startswith(PREFIX):
        return data
    path, tokenizer = split_text_source(data)
    if tokenizer is not None:
        return data
    folder = _tokenizer_folder(model) if model else None
    if folder is None:
        raise DataError(
            f"text data {path} needs a tokenizer, and the model {model or '(none)'} names none",
            f"write it as text:{path}@MODEL_FOLDER (a Hugging Face folder with the tokenizer)",
        )
    return f"{PREFIX}{path}@{folder}"


def _tokenizer_folder(model: str) -> str | None:
    if model.startswith("hf:"):
        return model[3:].partition("#")[0]
    from dlopt.artifacts import read_manifest

    path = Path(model)
    if not path.is_file():
        return None
    try:
        manifest = read_manifest(path) or {}
    except DloptError:
        return None
    reference = str(manifest.get("source", {}).get("reference", ""))
    if not reference.startswith("hf:"):
        return None
    # Recorded relative to the manifest's folder (or withheld when outside: then None).
    from dlopt.trust.provenance import resolve_recorded

    folder = resolve_recorded(reference[3:].partition("#")[0], path.resolve().parent)
    return str(folder) if folder is not None else None


def text_chunks(source: str, specs: Sequence[TensorSpec]) -> Any:
    """A re-callable chunk reader for `dlopt.data.DataSource`: dicts of token arrays (plus
    `labels` from a JSONL), LINES_PER_CHUNK samples each."""
    path, tokenizer_folder = split_text_source(source)
    if tokenizer_folder is None:
        raise DataError(f"text data {path} has no tokenizer", f"write text:{path}@MODEL_FOLDER")
    names = [spec.name for spec in specs]
    length = _sequence_length(specs, source)

    def chunks() -> Iterator[Mapping[str, Any]]:
        from dlopt.hf_source import load_tokenizer

        tokenizer = load_tokenizer(tokenizer_folder, source)
        if tokenizer.pad_token is None:  # GPT-2's has none: pad with end-of-text, as is usual
            if tokenizer.eos_token is None:
                raise DataError(
                    f"the tokenizer in {tokenizer_folder} has no pad or end-of-text token",
                    "give a tokenizer that pads, or the data as .npz",
                )
            tokenizer.pad_token = tokenizer.eos_token
        for texts, labels in _samples(path):
            encoded = tokenizer(
                texts,
                padding="max_length",
                truncation=True,
                max_length=length,
                return_tensors="np",
            )
            missing = [name for name in names if name not in encoded]
            if missing:
                raise DataError(
                    f"the tokenizer in {tokenizer_folder} gives no {missing[0]!r}",
                    f"it gives {', '.join(encoded)}; the model takes {', '.join(names)}",
                )
            chunk: dict[str, Any] = {name: np.asarray(encoded[name]) for name in names}
            if labels is not None:
                chunk["labels"] = np.asarray(labels)
            yield chunk

    return chunks


def _sequence_length(specs: Sequence[TensorSpec], source: str) -> int:
    for spec in specs:
        if len(spec.dims) == 2 and spec.dtype in ("int64", "int32"):
            return spec.dims[1].size
    raise DataError(
        f"{source}: the model takes no token ids (an int64 input of shape batch x sequence)",
        "text data is for text models; give this model .npz data",
    )


def _samples(path: Path) -> Iterator[tuple[list[str], list[int] | None]]:
    """Batches of (texts, labels or None) from a .txt or .jsonl file."""
    texts: list[str] = []
    labels: list[int] = []
    with_labels: bool | None = None
    with open(path, encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                text, label = _json_sample(line, path, number)
                if with_labels is None:
                    with_labels = label is not None
                elif with_labels != (label is not None):
                    raise DataError(
                        f"{path} line {number}: some samples have a label and some do not",
                        "give a label on every line or on none",
                    )
                if label is not None:
                    labels.append(label)
            else:
                text = line.rstrip("\n")
            texts.append(text)
            if len(texts) == LINES_PER_CHUNK:
                yield texts, labels if with_labels else None
                texts, labels = [], []
    if texts:
        yield texts, labels if with_labels else None


def _json_sample(line: str, path: Path, number: int) -> tuple[str, int | None]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(f"{path} line {number} is not JSON: {error.msg}", TEXT_HELP) from error
    if not isinstance(record, dict):
        raise DataError(f"{path} line {number} is not a JSON object", TEXT_HELP)
    text = next((record[key] for key in TEXT_KEYS if key in record), None)
    if not isinstance(text, str):
        raise DataError(f"{path} line {number} has no 'text' string", TEXT_HELP)
    label = next((record[key] for key in LABEL_KEYS if key in record), None)
    if label is not None and (not isinstance(label, int) or isinstance(label, bool)):
        raise DataError(
            f"{path} line {number}: label {label!r} is not an integer class",
            "give class indices (0, 1, ...)",
        )
    return text, label
