"""`hf:PATH[#TASK]` model sources: a local Hugging Face model folder (config.json + weights).

The task picks the head and what the model returns:
- `feature-extraction`: the base model, last hidden state mean-pooled over the attention mask
  (as sentence encoders are used), output `sentence_embedding` (batch, hidden); for encoder-decoder
  configs (T5) the encoder alone;
- `sequence-classification`: output `logits` (batch, labels);
- `causal-lm`: output `logits` (batch, seq, vocab), without the key/value cache.
Without `#TASK` (or `--task`), the config's `architectures` decide (`...ForSequenceClassification`,
`...ForCausalLM` / `...LMHeadModel`), else feature-extraction.

Inputs: `input_ids` (token ids 0..vocab_size-1) and `attention_mask` (0..1; 1..1 for causal LMs),
batch and sequence dynamic; the example sequence length is 128, or half the model's positions where
that is less.

Safe by default, as every other source: weights load from safetensors, or from a torch file
with `weights_only=True`; code shipped in the folder (`auto_map`) is never run
(`trust_remote_code=False`); nothing is downloaded (`local_files_only=True`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlopt.errors import SourceError
from dlopt.extras import require
from dlopt.specs import TensorSpec, parse_input_specs

if TYPE_CHECKING:
    import torch

PREFIX = "hf:"
TASKS = ("feature-extraction", "sequence-classification", "causal-lm")
DEFAULT_SEQUENCE = 128
_WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.pt", "*.pth")


def split_hf_source(text: str) -> tuple[Path, str | None]:
    """`hf:PATH[#TASK]` -> (folder, task or None); raises SourceError."""
    body = text[len(PREFIX) :]
    folder_text, _, task = body.partition("#")
    folder = Path(folder_text)
    if not folder_text or not folder.is_dir():
        raise SourceError(
            f"{text}: {folder_text or 'the path'} is not a folder",
            "hf:PATH takes a local Hugging Face model folder (config.json and weights)",
        )
    if not (folder / "config.json").is_file():
        raise SourceError(
            f"{text}: {folder} has no config.json",
            "give the folder that save_pretrained wrote (config.json and model.safetensors)",
        )
    if task and task not in TASKS:
        raise SourceError(f"{text}: unknown task {task!r}", f"tasks: {', '.join(TASKS)}")
    return folder, task or None


def with_task(source: str, task: str | None) -> str:
    """`hf:PATH` with `--task` folded in as `hf:PATH#TASK` (the form manifests and workers use)."""
    if task is None:
        return source
    if not source.startswith(PREFIX):
        raise SourceError(
            f"--task {task} is for hf: sources, not {source}",
            "drop --task, or give the model as hf:PATH",
        )
    if task not in TASKS:
        raise SourceError(f"unknown task {task!r}", f"tasks: {', '.join(TASKS)}")
    return f"{source.partition('#')[0]}#{task}"


def load_hf_model(
    folder: Path, task: str | None, text: str
) -> tuple[torch.nn.Module, list[TensorSpec], dict[str, Any]]:
    """The model (wrapped to take `input_ids`, `attention_mask` and return named tensors), its
    input specs and a description (task, model type, sizes) for the manifest."""
    transformers = _import_transformers("an hf: source")
    config = _config(transformers, folder, text)
    if not any(folder.glob(pattern) for pattern in _WEIGHT_FILES):
        raise SourceError(
            f"{text}: {folder} holds no weights (model.safetensors or pytorch_model.bin)",
            "save the model with save_pretrained into that folder",
        )
    task = task or default_task(config)
    wrapper = _wrapper(transformers, folder, config, task, text)
    vocab_size = int(getattr(config, "vocab_size", 0) or 0)
    if vocab_size < 1:
        raise SourceError(f"{text}: config.json has no vocab_size", "is it a text model?")
    # Half the positions at most: the parity check also runs twice the example length.
    sequence = min(DEFAULT_SEQUENCE, (_max_positions(config) or 2 * DEFAULT_SEQUENCE) // 2)
    # A random 0/1 mask leaves some causal rows with nothing to attend to (every earlier token
    # masked): what those rows compute is undefined and differs between runtimes, and real
    # (right-padded) text never has them. So a causal LM's random masks are all ones.
    mask_low = 1 if task == "causal-lm" else 0
    specs = parse_input_specs(
        [
            f"input_ids:batch=1xseq={sequence}:int64:0..{vocab_size - 1}",
            f"attention_mask:batch=1xseq={sequence}:int64:{mask_low}..1",
        ]
    )
    description = {
        "task": task,
        "model_type": getattr(config, "model_type", None),
        "vocab_size": vocab_size,
        "max_positions": _max_positions(config),
    }
    return wrapper, specs, description


def default_task(config: Any) -> str:
    """The task the config's `architectures` name, else feature-extraction."""
    for architecture in getattr(config, "architectures", None) or []:
        if architecture.endswith("ForSequenceClassification"):
            return "sequence-classification"
        if architecture.endswith(("ForCausalLM", "LMHeadModel")):
            return "causal-lm"
    return "feature-extraction"


def load_tokenizer(folder: Path, where: str) -> Any:
    """The folder's tokenizer (AutoTokenizer, local files only, no remote code)."""
    transformers = _import_transformers("text: data")
    try:
        return transformers.AutoTokenizer.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False
        )
    except Exception as error:
        raise SourceError(
            f"{where}: cannot load a tokenizer from {folder}: {_short(error)}",
            "give a folder with tokenizer.json or vocab.txt (what save_pretrained writes)",
        ) from error


def _import_transformers(needed_for: str) -> Any:
    from dlopt.torchvision_source import prepare_torchvision_import

    prepare_torchvision_import()  # transformers imports torchvision where it is installed
    return require("transformers", "hf", needed_for)


def _config(transformers: Any, folder: Path, text: str) -> Any:
    try:
        return transformers.AutoConfig.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False
        )
    except Exception as error:
        raise SourceError(
            f"{text}: cannot read {folder / 'config.json'}: {_short(error)}",
            "dlopt runs no code from model folders (trust_remote_code stays off) and needs "
            "a config.json with a model_type transformers knows",
        ) from error


def _max_positions(config: Any) -> int | None:
    for key in ("max_position_embeddings", "n_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None  # relative positions (T5): any length


def _wrapper(transformers: Any, folder: Path, config: Any, task: str, text: str) -> Any:
    auto_class = {
        "feature-extraction": transformers.AutoModel,
        "sequence-classification": transformers.AutoModelForSequenceClassification,
        "causal-lm": transformers.AutoModelForCausalLM,
    }[task]
    try:
        model = auto_class.from_pretrained(
            str(folder),
            config=config,
            local_files_only=True,
            trust_remote_code=False,
            weights_only=True,
        )
    except Exception as error:
        raise SourceError(
            f"{text}: cannot load the {task} model from {folder}: {_short(error)}",
            f"check that the folder holds a {task} model (tasks: {', '.join(TASKS)})",
        ) from error
    from dlopt.hf_heads import Logits, MeanPooled

    model.eval()
    if task == "feature-extraction":
        if getattr(config, "is_encoder_decoder", False):
            model = model.get_encoder()
        return MeanPooled(model)
    return Logits(model, causal=task == "causal-lm")


def _short(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200] if lines else ''}"
