"""Shared option types and the error handling every command uses."""

from __future__ import annotations

import functools
import os
import sys
import traceback
import warnings
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from dlopt.errors import DloptError, ExitCode

F = TypeVar("F", bound=Callable[..., Any])
INTERRUPTED = 130  # Ctrl-C, as shells report a process ended by SIGINT

SourceArg = Annotated[
    str,
    typer.Argument(
        help="The model: path/to/model.py:factory, package.module:factory, hf:MODEL_FOLDER "
        "(a local Hugging Face folder; dlopt[hf]), torchvision:NAME (dlopt[torchvision]), a "
        "TorchScript file, a .pt2 ExportedProgram, or an .onnx file where the command takes "
        "ONNX.",
        show_default=False,
    ),
]


class HfTask(str, Enum):
    feature_extraction = "feature-extraction"
    sequence_classification = "sequence-classification"
    causal_lm = "causal-lm"


HfTaskOpt = Annotated[
    HfTask | None,
    typer.Option(
        "--task",
        help="Head of an hf: model: feature-extraction (mean-pooled embedding), "
        "sequence-classification (logits) or causal-lm (logits). Default: from the config's "
        "architectures. Same as hf:FOLDER#TASK.",
        show_default=False,
    ),
]
WeightsOpt = Annotated[
    Path | None,
    typer.Option(
        "--weights",
        "-w",
        help="State dict for a factory source (.pt/.pth/.bin via torch.load(weights_only=True), "
        "or .safetensors).",
    ),
]
InputOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--input",
        "-i",
        help="Input spec NAME:DIMS[:DTYPE[:LOW..HIGH]], repeatable, e.g. image:batch=1x3x224x224 "
        "or input_ids:batch=1xseq=64:int64:0..999. Default: the model file's DLOPT_INPUTS.",
        show_default=False,
    ),
]
TrustPickleOpt = Annotated[
    bool,
    typer.Option(
        "--trust-pickle",
        help="Load pickles that hold more than tensors (weights, .pt2 ExportedPrograms). "
        "Unpickling runs code: only for files you trust.",
    ),
]


def _keep_debug_metadata(value: bool) -> bool:
    from dlopt.trust.metadata_strip import keep_debug_metadata

    keep_debug_metadata(value)  # called for every invocation, with the default too
    return value


KeepDebugMetadataOpt = Annotated[
    bool,
    typer.Option(
        "--keep-debug-metadata",
        callback=_keep_debug_metadata,
        help="Keep the build machine's debug metadata in the artifacts (exporter stack traces "
        "with source paths, TorchScript debug pickles, converter parameters; the gate's worker "
        "logs). Default: stripped, and the manifest records the sizes.",
    ),
]

ModelKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="AES-256 key of encrypted (.enc) artifacts, from `dlopt keygen --model-key`. "
        "Default: DLOPT_MODEL_KEY (a key file's path, or its one line). Decrypted only in "
        "memory.",
        show_default=False,
    ),
]

ExecutorOpt = Annotated[
    str,
    typer.Option(
        "--executor",
        help="Where the bench jobs run: local (here, one backend after another) or ray (each "
        "backend's jobs as one Ray task on a node with its target's resources; needs "
        "dlopt[ray]).",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="The Ray cluster (host:port of the head node, or ray://host:10001). Default: "
        "RAY_ADDRESS, else a local cluster started for the run.",
        show_default=False,
    ),
]
StageUriOpt = Annotated[
    str | None,
    typer.Option(
        "--stage-uri",
        help="Send models, data and results between here and the Ray nodes through this URI "
        "(s3://bucket/path, file:///shared/path: any fsspec URI) instead of Ray's object store.",
        show_default=False,
    ),
]


def debug_enabled() -> bool:
    return os.environ.get("DLOPT_DEBUG", "") not in ("", "0", "false", "no")


def report_errors(command: F) -> F:
    """The error contract, applied once to every command (see `dlopt.cli`).

    A DloptError is one line on stderr and its exit code (2 for the user's mistakes); Ctrl-C
    is exit 130; any other exception is a bug: its traceback and exit 4. Python warnings
    (numpy's, torch's) raised meanwhile are held back, so that a user error stays one line:
    they are printed after the command's own output, or dropped when a user error ends it
    (DLOPT_DEBUG=1 shows them).
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings(record=True) as caught:
            try:
                result = command(*args, **kwargs)
            except (typer.Exit, typer.Abort, typer.BadParameter):
                _show_warnings(caught)
                raise
            except DloptError as error:
                if debug_enabled():
                    _show_warnings(caught)
                    traceback.print_exc()
                suffix = "" if debug_enabled() else " (set DLOPT_DEBUG=1 for the traceback)"
                print(f"error: {error.one_line()}{suffix}", file=sys.stderr)
                raise typer.Exit(int(error.exit_code)) from None
            except KeyboardInterrupt:
                print("interrupted", file=sys.stderr)
                raise typer.Exit(INTERRUPTED) from None
            except Exception:
                _show_warnings(caught)
                traceback.print_exc()
                print(
                    "internal error: this is a bug in dlopt; please report it with the "
                    "traceback above",
                    file=sys.stderr,
                )
                raise typer.Exit(int(ExitCode.INTERNAL_ERROR)) from None
        _show_warnings(caught)
        return result

    return wrapper  # type: ignore[return-value]


def _show_warnings(caught: list[warnings.WarningMessage]) -> None:
    for item in caught:
        text = warnings.formatwarning(
            item.message, item.category, item.filename, item.lineno, item.line
        )
        sys.stderr.write(text)
