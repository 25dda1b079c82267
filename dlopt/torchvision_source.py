"""`torchvision:NAME` model sources: a torchvision architecture by name, no factory file to write.

The model is built with random weights (`weights=None`, and `weights_backbone=None` for the
builders that take one: dlopt never downloads); trained weights come with `--weights FILE`, a
state_dict read like any other (`weights_only`, or safetensors).

Importing torchvision next to the CPU torch (a documented trap): PyPI has no CPU build of the
torchvision that matches torch 2.13.0+cpu, only `torchvision==0.28.0+cu130`. It installs (it
requires `torch==2.13.0`, which the CPU build satisfies) but `import torchvision` fails with
`RuntimeError: operator torchvision::nms does not exist`: its `_C.so` links CUDA libraries that
are not there, so the C++ ops (nms, roi_align, deform_conv2d) are never registered;
`extension.py` tolerates that, but `_meta_registrations.py` registers fake kernels for them
unconditionally. `import_torchvision` tries the normal import first; only on that error it drops
the half-imported modules, puts an empty module in place of `_meta_registrations` (fake kernels
for ops that do not exist have nothing to describe) and imports again. Every model that needs no
C++ op (classification, segmentation, video) then works; detection models, whose
post-processing calls nms, are refused with a message.
"""

from __future__ import annotations

import inspect
import sys
import types
from typing import TYPE_CHECKING, Any

from dlopt.errors import SourceError
from dlopt.extras import require
from dlopt.specs import TensorSpec, parse_input_specs

if TYPE_CHECKING:
    import torch

PREFIX = "torchvision:"
_META_REGISTRATIONS = "torchvision._meta_registrations"
DEFAULT_IMAGE_SIZE = 224


def import_torchvision() -> Any:
    """`torchvision`, imported even where its C++ ops cannot load (see the module docstring);
    raises SourceError naming the `torchvision` extra when it is not installed."""
    try:
        return require("torchvision", "torchvision", "a torchvision: source")
    except RuntimeError as error:
        if "torchvision::" not in str(error):
            raise
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]
    sys.modules[_META_REGISTRATIONS] = types.ModuleType(_META_REGISTRATIONS)
    import torchvision

    return torchvision


def prepare_torchvision_import() -> None:
    """Make torchvision importable where it is installed; nothing where it is not.

    For the libraries that import torchvision themselves when they find it (transformers
    does, for its image utilities, on the first import of a model class): without this, the
    error above stops them too.
    """
    import importlib.util

    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is None:
        return
    import_torchvision()


def has_cpp_ops(torchvision: Any) -> bool:
    """Whether torchvision's C++ ops (nms, roi_align, ...) loaded."""
    return bool(torchvision.extension._has_ops())


def load_torchvision_model(name: str, text: str) -> tuple[torch.nn.Module, list[TensorSpec]]:
    """A torchvision model with random weights, and its default input specs."""
    torchvision = import_torchvision()
    models = torchvision.models
    available = models.list_models()
    if name not in available:
        close = [m for m in available if name.lower() in m or m in name.lower()][:6]
        raise SourceError(
            f"{text}: torchvision {torchvision.__version__} has no model {name!r}",
            f"names are those of torchvision.models.list_models(), e.g. "
            f"{', '.join(close or available[:6])}",
        )
    family = _family(models, name)
    if family == "detection" and not has_cpp_ops(torchvision):
        raise SourceError(
            f"{text}: detection models need torchvision's C++ ops (nms), which this torchvision "
            "build cannot load next to a CPU torch",
            "use a classification or segmentation model, or a factory (model.py:factory) that "
            "returns the backbone",
        )
    builder = models.get_model_builder(name)
    kwargs: dict[str, Any] = {"weights": None}
    if "weights_backbone" in inspect.signature(builder).parameters:
        kwargs["weights_backbone"] = None  # its default would download ImageNet weights
    try:
        module = builder(**kwargs)
    except Exception as error:
        raise SourceError(
            f"{text}: building torchvision's {name} failed: {type(error).__name__}: {error}",
            "give a factory (model.py:factory) that builds it",
        ) from error
    return module, _default_inputs(models, name, family)


def _family(models: Any, name: str) -> str:
    for family in ("detection", "segmentation", "video", "optical_flow", "quantization"):
        if name in models.list_models(module=getattr(models, family)):
            return family
    return "classification"


def _default_inputs(models: Any, name: str, family: str) -> list[TensorSpec]:
    """`image:batch=1x3xSxS` at the size the model's weights were trained at (224 for most,
    299 for Inception v3); a video clip for video models; none (ask for --input) otherwise."""
    if family == "video":
        return parse_input_specs(["video:batch=1x3x16x112x112"])
    if family not in ("classification", "segmentation", "quantization"):
        return []
    size = DEFAULT_IMAGE_SIZE
    try:
        default = models.get_model_weights(name).DEFAULT
        size = int(default.transforms.keywords.get("crop_size", size))
    except (ValueError, AttributeError, KeyError, TypeError):
        pass
    return parse_input_specs([f"image:batch=1x3x{size}x{size}"])
