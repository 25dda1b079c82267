"""Portable paths in manifests and reports, and the manifest seal."""

from __future__ import annotations

from pathlib import Path

from dlopt.trust.provenance import WITHHELD, final_folder, portable, portable_path, seal


def test_a_path_in_the_same_tree_becomes_relative() -> None:
    folder = Path("/work/project/reports/run/artifacts/int8")

    assert portable_path("/work/project/reports/run/artifacts/fp32/model.onnx", folder) == (
        "../fp32/model.onnx"
    )


def test_a_path_that_would_climb_to_the_root_is_withheld() -> None:
    folder = Path("/tmp/run/out")

    assert portable_path("/srv/alice/proj/model.py", folder) == WITHHELD + "model.py"


def test_a_path_that_would_name_another_home_is_withheld() -> None:
    folder = Path.home().parent / "bob" / "out"

    assert portable_path(str(Path.home() / "proj" / "m.py"), folder) == WITHHELD + "m.py"


def test_paths_inside_text_and_commands_are_rewritten() -> None:
    folder = Path("/work/project/out")
    value = {
        "command": ["/work/project/.venv/bin/dlopt", "export", "/work/project/m.py:make"],
        "reason": "cannot read /work/project/data.npz: no /dev/nvidia0",
        "rate": "items/s",
    }

    assert portable(value, folder) == {
        "command": ["dlopt", "export", "../m.py:make"],
        "reason": "cannot read ../data.npz: no /dev/nvidia0",
        "rate": "items/s",
    }


def test_staging_folders_are_not_the_final_folder() -> None:
    staged = Path("/work/out/.dlopt-staging-ab12/.dlopt-staging-cd34/model.onnx")

    assert final_folder(staged) == Path("/work/out")


def test_the_seal_changes_with_any_field_and_ignores_itself() -> None:
    manifest = {"file": "model.onnx", "sha256": "a" * 64, "manifest_sha256": "x"}

    assert seal(manifest) == seal({**manifest, "manifest_sha256": "y"})
    assert seal(manifest) != seal({**manifest, "sha256": "b" * 64})


def test_paths_behind_source_prefixes_are_rewritten_and_urls_are_not() -> None:
    folder = Path("/srv/work/project/out/fp32")

    assert portable("hf:/srv/work/project/minilm#feature-extraction", folder) == (
        "hf:../../minilm#feature-extraction"
    )
    assert portable("text:/srv/work/project/s.txt@/srv/work/project/minilm", folder) == (
        "text:../../s.txt@../../minilm"
    )
    assert portable("https://in-toto.io/Statement/v1", folder) == "https://in-toto.io/Statement/v1"
