"""Outputs never overwrite inputs and are known to be writable before work starts; staging
folders of killed runs are cleaned by the next run into their folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dlopt.artifacts import STAGING_PREFIX, remove_stale_staging, staging_dir
from dlopt.errors import ArtifactError, ConfigError
from dlopt.path_safety import check_outputs, check_path_segment


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"onnx")
    (folder / "model.onnx.dlopt.json").write_text("{}")
    (folder / "model.onnx.data").write_bytes(b"weights")
    return folder / "model.onnx"


@pytest.mark.parametrize(
    ("folders", "files", "message"),
    [
        (["dir"], [], "output folder .*dir holds the input"),
        (["."], [], "holds the input"),
        ([], ["dir/model.onnx"], "is the input"),
        ([], ["dir/./model.onnx"], "is the input"),
        ([], ["dir/model.onnx.dlopt.json"], "is the input"),  # its manifest
        ([], ["dir/model.onnx.data"], "is the input"),  # its external weights
        ([], ["link.onnx"], "is the input"),  # a symlink to it
        ([], ["hard.onnx"], "is the input"),  # a hard link to it
        (["out"], ["out2/r.json", "out2/r.json"], "two outputs go to the same path"),
    ],
)
def test_an_output_over_an_input_is_refused(
    model: Path,
    tmp_path: Path,
    folders: list[str],
    files: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "link.onnx").symlink_to(model)
    os.link(model, tmp_path / "hard.onnx")
    monkeypatch.chdir(tmp_path)

    with pytest.raises(ArtifactError, match=message):
        check_outputs([str(model.relative_to(tmp_path))], map(Path, folders), map(Path, files))

    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "hard.onnx", "link.onnx"]


def test_references_name_their_files(model: Path, tmp_path: Path) -> None:
    (model.parent / "net.py").write_text("")

    with pytest.raises(ArtifactError, match="holds the input"):
        check_outputs([f"{model.parent / 'net.py'}:make"], [model.parent])
    check_outputs(["synthetic", "pkg.module:factory", None], [tmp_path / "out"])  # no files
    check_outputs([str(model)], [tmp_path / "out"], [tmp_path / "new" / "report.json"])
    assert not (tmp_path / "out").exists() and not (tmp_path / "new").exists()  # only probed


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda t: ([], [t / "folder"]), "is a folder"),
        (lambda t: ([t / "file"], []), "exists and is not a folder"),
        (lambda t: ([t / "file" / "sub"], []), "is not a folder"),
        (lambda t: ([Path("/proc/self/fd")], []), "cannot write /proc/self/fd"),
    ],
)
def test_unwritable_outputs_are_refused_up_front(
    tmp_path: Path, make: object, message: str
) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    folders, files = make(tmp_path)  # type: ignore[operator]

    with pytest.raises(ArtifactError, match=message):
        check_outputs([], folders, files)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(ArtifactError, match="cannot write"):
            check_outputs([], [], [tmp_path / "report.json"])
    finally:
        tmp_path.chmod(0o700)


@pytest.mark.parametrize(
    "name",
    ["..", ".", "a/b", "a\\b", ".hidden", "-x", "x.", "x ", "CON", "nul.txt", "com1", "a\x00b"],
)
def test_unsafe_path_segments(name: str) -> None:
    with pytest.raises(ConfigError):
        check_path_segment(name, "variant name")


@pytest.mark.parametrize("name", ["int8-static", "v1.2", "A_b", "console", "nullable"])
def test_safe_path_segments(name: str) -> None:
    check_path_segment(name, "variant name")


def test_staging_folders_of_a_killed_run_are_removed_by_the_next_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from dlopt.artifacts import staging_dir\n"
        "with staging_dir(Path(sys.argv[1])) as staging:\n"
        "    (staging / 'model.onnx').write_bytes(b'half')\n"
        "    print(staging, flush=True)\n"
        "    time.sleep(600)\n"
    )
    killed = subprocess.Popen(
        [sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True
    )
    assert killed.stdout is not None
    left = Path(killed.stdout.readline().strip())
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    legacy = out / f"{STAGING_PREFIX}abc123"  # named by an older dlopt, without a PID
    legacy.mkdir()
    live = out / f"{STAGING_PREFIX}{os.getpid()}-live"  # this process's: still running
    live.mkdir()
    assert left.is_dir() and left.parent == out

    with staging_dir(out) as staging:
        assert staging.name.startswith(f"{STAGING_PREFIX}{os.getpid()}-")

    assert sorted(p.name for p in out.iterdir()) == [live.name]
    assert remove_stale_staging(out) == []
