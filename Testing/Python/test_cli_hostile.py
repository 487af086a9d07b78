"""The ``regsuite`` command against hostile input: each case ends with one line on stderr, a
non-zero status (2 bad input, 1 failure, 128+n for signal n), no output file, no hidden
temporary, and inputs with their bytes and modification times unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from regsuite.cli.main import main
from regsuite.io.safety import usable_cores

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "RegistrationSuite")}


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(err: str, prefix: str = "regsuite: error: ") -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    assert "Traceback" not in err and ".tmp" not in err, err  # never a hidden temporary's name
    return lines[0]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of ``folder`` (hidden ones included) with its bytes and mtime."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()} | \
        {p.name + "/": (b"", 0) for p in folder.iterdir() if p.is_dir()}


def blob(shift_x: float = 0.0, size: int = 20) -> sitk.Image:
    z, y, x = np.meshgrid(*[np.arange(size) * 2.0] * 3, indexing="ij")
    centre = (size - 1)
    values = np.exp(-(((x - centre - shift_x) / 8.0) ** 2 + ((y - centre) / 5.0) ** 2 + ((z - centre) / 4.0) ** 2))
    image = sitk.GetImageFromArray((1000.0 * values).astype(np.float32))
    image.SetSpacing((2.0, 2.0, 2.0))
    return image


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path]:
    fixed, moving = tmp_path / "fixed.nii.gz", tmp_path / "moving.nii.gz"
    sitk.WriteImage(blob(), str(fixed))
    sitk.WriteImage(blob(3.0), str(moving))
    return fixed, moving


@pytest.fixture()
def labels(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A uint8 label map (labels 0, 10, 200), its grid as reference, and a half-voxel shift."""
    values = np.zeros((12, 12, 12), np.uint8)
    values[2:6] = 10
    values[6:10] = 200
    image = sitk.GetImageFromArray(values)
    paths = tmp_path / "labels.nrrd", tmp_path / "reference.nrrd", tmp_path / "half.tfm"
    sitk.WriteImage(image, str(paths[0]))
    sitk.WriteImage(image, str(paths[1]))
    sitk.WriteTransform(sitk.TranslationTransform(3, (0.0, 0.0, 0.5)), str(paths[2]))
    return paths


# ----------------------------------------------------------------------------- options
def test_threads_are_capped_to_the_usable_cores(capsys, tmp_path, pair):
    import torch

    fixed, moving = pair
    code, _, err = run(capsys, "register", "--fixed", fixed, "--moving", moving, "--preset", "rigid",
                       "--output-transform", tmp_path / "t.tfm", "--threads", 100000, "--quiet", "--device", "cpu")
    assert code == 0, err
    warning = one_line(err, "regsuite: warning: ")
    assert "--threads 100000" in warning and f"using {usable_cores()}" in warning
    assert torch.get_num_threads() == usable_cores()  # what the engine was given
    before = snapshot(tmp_path)
    code, _, err = run(capsys, "register", "--fixed", fixed, "--moving", moving, "--preset", "rigid",
                       "--output-transform", tmp_path / "u.tfm", "--threads", 0)
    assert code == 2 and "--threads must be at least 1" in one_line(err)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("seed", [2**64, -1, 10**30])
def test_seed_outside_64_bits_is_refused(capsys, tmp_path, pair, seed):
    fixed, moving = pair
    before = snapshot(tmp_path)
    code, _, err = run(capsys, "register", "--fixed", fixed, "--moving", moving, "--preset", "rigid",
                       "--output-transform", tmp_path / "t.tfm", "--seed", seed)
    assert code == 2 and "--seed" in one_line(err)
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- output locations
def test_log_json_onto_the_preset_file_is_refused(capsys, tmp_path, pair):
    fixed, moving = pair
    preset = tmp_path / "mine.json"
    assert run(capsys, "presets", "--copy", "rigid", preset)[0] == 0
    alias = tmp_path / "alias.json"
    os.link(preset, alias)  # a hard link is the same file under another name
    before = snapshot(tmp_path)
    for log in (preset, alias, tmp_path / "." / "mine.json"):
        code, _, err = run(capsys, "register", "--fixed", fixed, "--moving", moving, "--preset", preset,
                           "--output-transform", tmp_path / "t.tfm", "--log-json", log)
        assert code == 2 and "would overwrite the input" in one_line(err), err
    assert snapshot(tmp_path) == before


def test_output_problems_are_found_before_registering(capsys, tmp_path, pair):
    fixed, moving = pair
    (tmp_path / "w.nii.gz").mkdir()
    (tmp_path / "t.zraw").mkdir()
    before = snapshot(tmp_path)
    common = ["register", "--fixed", fixed, "--moving", moving, "--preset", "rigid", "--device", "cpu"]
    for extra, words in (
            (["--output-transform", tmp_path / "t.tfm", "--output-image", tmp_path / "w.nii.gz"], "existing folder"),
            (["--output-transform", tmp_path / "t.tfm", "--output-image", tmp_path / "t.mhd"], "t.zraw"),
            (["--output-transform", tmp_path / "t.tfm", "--output-image", tmp_path / "w.nii.GZ"], "mixed-case"),
            (["--output-transform", tmp_path / "t.tfm", "--output-inverse", tmp_path / "." / "t.tfm"], "twice"),
            (["--output-transform", tmp_path / "t.tfm", "--output-image", tmp_path / "moving.mhd",
              "--moving-mask", tmp_path / "moving.zraw"], "moving.zraw")):
        if "moving.zraw" in words:
            shutil.copy(moving, tmp_path / "moving.zraw")  # an input named like the data file
            before = snapshot(tmp_path)
        code, out, err = run(capsys, *common, *extra)
        line = one_line(err)
        assert code == 2 and words in line, line
        assert "stage 1/" not in err and out == ""  # refused before any registration work
        assert snapshot(tmp_path) == before


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_refused_before_registering(capsys, tmp_path, pair):
    fixed, moving = pair
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = run(capsys, "register", "--fixed", fixed, "--moving", moving, "--preset", "rigid",
                           "--output-transform", locked / "t.tfm")
        assert code == 2 and "not writable" in one_line(err)
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_upper_case_and_detached_outputs_of_register(capsys, tmp_path, pair):
    fixed, moving = pair
    code, _, err = run(capsys, "register", "--fixed", fixed, "--moving", moving, "--preset", "rigid", "--quiet",
                       "--device", "cpu", "--threads", 1, "--output-transform", tmp_path / "T.H5",
                       "--output-image", tmp_path / "W.MHA", "--output-jacobian", tmp_path / "J.MHD")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path)) == ["J.MHD", "J.zraw", "T.H5", "W.MHA", "fixed.nii.gz", "moving.nii.gz"]
    assert (tmp_path / "W.MHA").read_bytes().startswith(b"ObjectType = Image")
    assert b"ElementDataFile = J.zraw" in (tmp_path / "J.MHD").read_bytes()
    reader = sitk.ImageFileReader()
    reader.SetImageIO("MetaImageIO")  # ITK picks readers by lower-case suffix; name it
    for name, expected in (("W.MHA", sitk.sitkFloat32), ("J.MHD", sitk.sitkFloat32)):
        reader.SetFileName(str(tmp_path / name))
        image = reader.Execute()
        assert image.GetSize() == (20, 20, 20) and image.GetPixelID() == expected
    assert sitk.ReadTransform(str(tmp_path / "T.H5")).GetDimension() == 3


# ----------------------------------------------------------------------------- signals
SIGNAL_CHILD = textwrap.dedent("""
    import os, signal, sys
    import SimpleITK as sitk
    from regsuite.cli.main import main
    # Ctrl-C in a terminal: a process started in the background by a non-interactive shell (a
    # script's "cmd &") inherits SIGINT ignored, and Python then keeps ignoring it
    signal.signal(signal.SIGINT, signal.default_int_handler)
    real = sitk.WriteImage
    def write_then_signal(*args, **kwargs):  # the signal arrives while the output is being written
        real(*args, **kwargs)
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    sitk.WriteImage = write_then_signal
    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("name, status", [("SIGTERM", 143), ("SIGHUP", 129), ("SIGINT", 130)])
def test_termination_signal_during_output_leaves_nothing(tmp_path, labels, name, status):
    image, reference, transform = labels
    before = snapshot(tmp_path)
    result = subprocess.run([sys.executable, "-c", SIGNAL_CHILD, name, "apply", "--reference", str(reference),
                             "--input", str(image), "--transform", str(transform),
                             "--output", str(tmp_path / "out.mhd")],
                            capture_output=True, text=True, timeout=120, env=ENV)
    assert result.returncode == status, result.stderr
    line = one_line(result.stderr, "regsuite: ")
    assert ("terminated by " + name if name != "SIGINT" else "interrupted") in line
    assert snapshot(tmp_path) == before  # no out.mhd, no out.zraw, no hidden folder


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_while_register_writes_its_outputs_leaves_none(tmp_path, pair):
    # the transform is staged before the image, the log after it; none of them may appear
    fixed, moving = pair
    before = snapshot(tmp_path)
    result = subprocess.run([sys.executable, "-c", SIGNAL_CHILD, "SIGTERM", "register", "--fixed", str(fixed),
                             "--moving", str(moving), "--preset", "rigid", "--device", "cpu", "--threads", "1",
                             "--output-transform", str(tmp_path / "t.h5"), "--log-json", str(tmp_path / "log.json"),
                             "--output-image", str(tmp_path / "w.nii.gz"), "--quiet"],
                            capture_output=True, text=True, timeout=300, env=ENV)
    assert result.returncode == 143, result.stderr
    assert "terminated by SIGTERM" in one_line(result.stderr, "regsuite: ")
    assert snapshot(tmp_path) == before


def test_interrupt_while_importing_is_one_line():
    # Ctrl-C during the first fraction of a second lands in an import (numpy, SimpleITK, torch)
    child = textwrap.dedent("""
        import builtins, sys
        real = builtins.__import__
        def interrupted(name, *args, **kwargs):
            if name == "SimpleITK":
                raise KeyboardInterrupt
            return real(name, *args, **kwargs)
        builtins.__import__ = interrupted
        sys.argv = ["regsuite", "presets"]
        from regsuite.cli import run
        run()
    """)
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60, env=ENV)
    assert result.returncode == 130
    assert one_line(result.stderr, "regsuite: ") == "regsuite: interrupted; no output written"


# ----------------------------------------------------------------------------- apply on label maps
def test_apply_keeps_labels_by_default_and_refuses_wrapping_default_values(capsys, tmp_path, labels):
    image, reference, transform = labels
    out = tmp_path / "out.nrrd"
    code, _, err = run(capsys, "apply", "--reference", reference, "--input", image, "--transform", transform,
                       "--output", out)
    assert code == 0 and err == ""
    assert set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(out))))) == {0, 10, 200}
    code, _, err = run(capsys, "apply", "--reference", reference, "--input", image, "--transform", transform,
                       "--output", out, "--interpolation", "linear")
    assert code == 0 and "--interpolation linear" in one_line(err, "regsuite: warning: ")
    invented = set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(out))))) - {0, 10, 200}
    assert invented == {5, 105, 100}  # halfway between 0/10, 10/200, 200/0: no such labels exist
    out.unlink()
    before = snapshot(tmp_path)
    for value, words in (("300", "0 .. 255"), ("-1", "0 .. 255"), ("2.5", "whole numbers"), ("nan", "whole")):
        code, _, err = run(capsys, "apply", "--reference", reference, "--input", image, "--transform", transform,
                           "--output", out, "--default-value", value)
        assert code == 2 and words in one_line(err), err
    assert snapshot(tmp_path) == before


def test_apply_refuses_truncated_and_sheared_inputs(capsys, tmp_path, labels):
    image, reference, transform = labels
    big = sitk.GetImageFromArray(np.random.default_rng(2).random((30, 30, 30)).astype(np.float32))
    sitk.WriteImage(big, str(tmp_path / "whole.nii.gz"))
    data = (tmp_path / "whole.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    skewed = sitk.Image([8, 8, 8], sitk.sitkFloat32)
    skewed.SetDirection((1.0, 0.0, 0.0, 0.3, 1.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(skewed, str(tmp_path / "skew.mha"))
    before = snapshot(tmp_path)
    for role, path, words in (("--input", "cut.nii.gz", "truncated"), ("--reference", "skew.mha", "not orthonormal"),
                              ("--input", "skew.mha", "not orthonormal")):
        args = {"--reference": reference, "--input": image, "--transform": transform, "--output": tmp_path / "o.nii"}
        args[role] = tmp_path / path
        code, _, err = run(capsys, "apply", *[item for pair in args.items() for item in pair])
        line = one_line(err)
        assert code == 2 and words in line and path in line, line
    assert snapshot(tmp_path) == before


def test_evaluate_malformed_markups_is_one_line(capsys, tmp_path):
    bad = tmp_path / "f.mrk.json"
    bad.write_text(json.dumps({"markups": [{"controlPoints": [{"position": None}]}]}))
    good = tmp_path / "m.txt"
    good.write_text("point\n1\n0 0 0\n")
    code, _, err = run(capsys, "evaluate", "--fixed-points", bad, "--moving-points", good)
    assert code == 2 and "f.mrk.json" in one_line(err)


FULL_DISK_CHILD = textwrap.dedent("""
    import resource, signal, sys
    from regsuite.cli.main import main
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_FSIZE")
@pytest.mark.parametrize("name", ["out.nii.gz", "out.nii", "out.mhd", "out.H5"])
def test_full_disk_while_writing_is_one_line_and_leaves_nothing(tmp_path, name):
    # A 60 kB file size limit stands in for a full disk; the 40^3 noise image needs ~250 kB.
    noise = sitk.GetImageFromArray(np.random.default_rng(4).random((40, 40, 40)).astype(np.float32))
    sitk.WriteImage(noise, str(tmp_path / "in.mha"))
    sitk.WriteTransform(sitk.TranslationTransform(3, (0.5, 0.0, 0.0)), str(tmp_path / "t.tfm"))
    field = tmp_path / "field.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(5).random((40, 40, 40, 3)), isVector=True), str(field))
    before = snapshot(tmp_path)
    if name.endswith(".H5"):  # a displacement field read and saved as an HDF5 transform (HDF5 crashed here)
        child = textwrap.dedent("""
            import resource, signal, sys
            from regsuite.cli.main import main
            from regsuite.errors import RegSuiteError
            from regsuite.io.transforms import read_transform, write_transform
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            transform = read_transform(sys.argv[1])
            resource.setrlimit(resource.RLIMIT_FSIZE, (60000, 60000))
            try:
                write_transform(transform, sys.argv[2])
            except RegSuiteError as error:
                print(f"regsuite: error: {error}", file=sys.stderr)
                sys.exit(error.exit_code)
        """)
        result = subprocess.run([sys.executable, "-c", child, str(field), str(tmp_path / name)],
                                capture_output=True, text=True, timeout=120, env=ENV)
    else:
        argv = ["apply", "--reference", str(tmp_path / "in.mha"), "--input", str(tmp_path / "in.mha"),
                "--transform", str(tmp_path / "t.tfm"), "--output", str(tmp_path / name)]
        result = subprocess.run([sys.executable, "-c", FULL_DISK_CHILD, "60000", *argv],
                                capture_output=True, text=True, timeout=120, env=ENV)
    assert result.returncode == 1, (result.returncode, result.stderr)  # a failure, not a crash
    assert name in one_line(result.stderr)
    assert snapshot(tmp_path) == before


OASIS_LABELS = ROOT.parent / "shared" / "data" / "oasis_trt20" / "OASIS-TRT-20-1" / "labels.DKT31.manual+aseg.nii.gz"


def test_float_label_map_gets_a_warning_and_intensities_do_not(capsys, tmp_path, labels):
    _, reference, transform = labels
    values = np.zeros((12, 12, 12), np.float32)
    values[3:9] = 17.0
    sitk.WriteImage(sitk.GetImageFromArray(values), str(tmp_path / "flabels.nii.gz"))
    smooth = sitk.GetImageFromArray(np.random.default_rng(6).normal(100.0, 20.0, (12, 12, 12)).astype(np.float32))
    sitk.WriteImage(smooth, str(tmp_path / "t1.nii.gz"))
    common = ["apply", "--reference", reference, "--transform", transform, "--output", tmp_path / "o.nii.gz"]
    code, _, err = run(capsys, *common, "--input", tmp_path / "flabels.nii.gz")
    assert code == 0 and "a label map?" in one_line(err, "regsuite: warning: ")
    code, _, err = run(capsys, *common, "--input", tmp_path / "flabels.nii.gz", "--interpolation", "linear")
    assert code == 0 and err == ""  # an explicit choice is respected silently
    code, _, err = run(capsys, *common, "--input", tmp_path / "t1.nii.gz")
    assert code == 0 and err == ""


@pytest.mark.skipif(not OASIS_LABELS.is_file(), reason="shared OASIS-TRT-20 data not present")
def test_real_float_label_map_keeps_its_labels_with_nearest(capsys, tmp_path):
    # OASIS-TRT-20 label maps are stored as float32: linear invents ~700k values, nearest none
    sitk.WriteTransform(sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.05, 0.02, 0.0, (1.3, -0.7, 0.4)),
                        str(tmp_path / "r.tfm"))
    common = ["apply", "--reference", OASIS_LABELS, "--input", OASIS_LABELS, "--transform", tmp_path / "r.tfm",
              "--output", tmp_path / "o.nii.gz"]
    code, _, err = run(capsys, *common)
    assert code == 0 and "a label map?" in one_line(err, "regsuite: warning: ")
    code, _, err = run(capsys, *common, "--interpolation", "nearest")
    assert code == 0 and err == ""
    original = set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(OASIS_LABELS)))).tolist())
    warped = set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "o.nii.gz")))).tolist())
    assert warped <= original and len(warped) > 0.95 * len(original)
