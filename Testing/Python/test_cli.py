"""Tests of the ``regsuite`` command line (regsuite.cli.main)."""

from __future__ import annotations

import contextlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import regsuite.cli.main as cli
from regsuite.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
PRESET_NAMES = ["affine", "affine-fast", "brain-any-contrast", "brain-any-contrast-io", "brain-mri", "brain-mri-coarse",
                "brain-mri-fast", "brain-mri-hypermorph", "brain-mri-voxelmorph", "brain-mri-voxelmorph-cascade",
                "brain-mri-voxelmorph-ic", "bspline", "ct-mr", "deformable", "lung-ct", "multimodal-rigid", "rigid"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, expected_code: int, *needles: str) -> None:
    assert code == expected_code
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("regsuite: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in err


def blob(shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0), size: int = 24,
         spacing: float = 2.0) -> sitk.Image:
    """Smooth anisotropic blob on a size^3 grid, moved by ``shift_mm`` in world space."""
    centre = (size - 1) * spacing / 2.0
    z, y, x = np.meshgrid(*[np.arange(size) * spacing] * 3, indexing="ij")
    values = np.exp(-(((x - centre - shift_mm[0]) / 9.0) ** 2 + ((y - centre - shift_mm[1]) / 6.0) ** 2
                      + ((z - centre - shift_mm[2]) / 4.5) ** 2))
    values += 0.5 * np.exp(-(((x - centre - 8 - shift_mm[0]) / 3.0) ** 2 + ((y - centre + 5 - shift_mm[1]) / 3.0) ** 2
                             + ((z - centre - shift_mm[2]) / 3.0) ** 2))
    image = sitk.GetImageFromArray((1000.0 * values).astype(np.float32))
    image.SetSpacing([spacing] * 3)
    return image


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path]:
    fixed, moving = tmp_path / "fixed.nii.gz", tmp_path / "moving.nii.gz"
    sitk.WriteImage(blob(), str(fixed))
    sitk.WriteImage(blob((3.0, 0.0, 0.0)), str(moving))
    return fixed, moving


# ----------------------------------------------------------------------------- errors
def test_no_command_and_unknown_option(capsys):
    code, _, _ = run(capsys)
    assert code == 2
    code, _, err = run(capsys, "register", "--fixed", "a.nii")
    assert_one_line_error(code, err, 2, "required", "--moving")
    code, _, err = run(capsys, "presets", "--bogus")
    assert_one_line_error(code, err, 2, "--bogus")


def test_missing_input_file(capsys, tmp_path, pair):
    fixed, _ = pair
    (tmp_path / "t.tfm").write_text("")
    sitk.WriteTransform(sitk.TranslationTransform(3), str(tmp_path / "t.tfm"))
    code, _, err = run(capsys, "apply", "--reference", fixed, "--input", tmp_path / "nope.nii.gz",
                       "--transform", tmp_path / "t.tfm", "--output", tmp_path / "out.nii.gz")
    assert_one_line_error(code, err, 2, "nope.nii.gz", "does not exist")
    assert not (tmp_path / "out.nii.gz").exists()


def test_2d_image_is_refused(capsys, tmp_path, pair):
    fixed, _ = pair
    flat = tmp_path / "flat.nii.gz"
    sitk.WriteImage(sitk.Image([16, 16], sitk.sitkFloat32), str(flat))
    sitk.WriteTransform(sitk.TranslationTransform(3), str(tmp_path / "t.tfm"))
    code, _, err = run(capsys, "apply", "--reference", fixed, "--input", flat,
                       "--transform", tmp_path / "t.tfm", "--output", tmp_path / "out.nii.gz")
    assert_one_line_error(code, err, 2, "2D", "flat.nii.gz")


def test_unknown_and_malformed_presets(capsys, tmp_path, pair):
    fixed, moving = pair
    code, _, err = run(capsys, "register", "--fixed", fixed, "--moving", moving, "--preset", "no-such-preset",
                       "--output-transform", tmp_path / "t.tfm")
    assert_one_line_error(code, err, 2, "no-such-preset")
    bad = tmp_path / "bad.json"
    bad.write_text('{"stages": [ {"model": "rigid",, } ]}')
    code, _, err = run(capsys, "register", "--fixed", fixed, "--moving", moving, "--preset", bad,
                       "--output-transform", tmp_path / "t.tfm")
    assert_one_line_error(code, err, 2, "bad.json", "JSON")
    code, _, err = run(capsys, "presets", "--show", "no-such-preset")
    assert_one_line_error(code, err, 2, "no-such-preset")
    wrong_window = tmp_path / "window.json"
    wrong_window.write_text('{"intensity": {"mode": "window", "low": -1000, "high": 0}, "stages": [{"model": "rigid"}]}')
    code, _, err = run(capsys, "register", "--fixed", fixed, "--moving", moving, "--preset", wrong_window,
                       "--output-transform", tmp_path / "t.tfm")
    assert_one_line_error(code, err, 2, "window.json", "does not take high, low")
    assert not (tmp_path / "t.tfm").exists()


def test_wrong_transform_file_kind(capsys, tmp_path, pair):
    fixed, moving = pair
    not_a_transform = tmp_path / "notes.tfm"
    not_a_transform.write_text("this is not an ITK transform\n")
    code, _, err = run(capsys, "apply", "--reference", fixed, "--input", moving,
                       "--transform", not_a_transform, "--output", tmp_path / "out.nii.gz")
    assert_one_line_error(code, err, 2, "notes.tfm")
    # a scalar image is not a displacement field
    code, _, err = run(capsys, "apply", "--reference", fixed, "--input", moving,
                       "--transform", moving, "--output", tmp_path / "out.nii.gz")
    assert_one_line_error(code, err, 2, "displacement field")


def test_nonlinear_preset_to_tfm_fails_before_reading_images(capsys, tmp_path):
    # the images do not exist: the extension problem must be reported first (before any work)
    code, _, err = run(capsys, "register", "--fixed", tmp_path / "f.nii.gz", "--moving", tmp_path / "m.nii.gz",
                       "--preset", "bspline", "--output-transform", tmp_path / "t.tfm")
    assert_one_line_error(code, err, 2, "t.tfm", ".h5")
    code, _, err = run(capsys, "register", "--fixed", tmp_path / "f.nii.gz", "--moving", tmp_path / "m.nii.gz",
                       "--preset", "bspline", "--output-transform", tmp_path / "t.h5",
                       "--output-inverse", tmp_path / "inv.h5")
    assert_one_line_error(code, err, 2, "inverse", "bspline")


def test_bad_output_paths(capsys, tmp_path, pair):
    fixed, moving = pair
    common = ["register", "--fixed", fixed, "--moving", moving, "--preset", "rigid"]
    code, _, err = run(capsys, *common, "--output-transform", tmp_path / "t.xyz")
    assert_one_line_error(code, err, 2, "t.xyz", ".h5")
    code, _, err = run(capsys, *common, "--output-transform", tmp_path / "t.tfm", "--output-image", tmp_path / "w.png")
    assert_one_line_error(code, err, 2, "w.png")
    code, _, err = run(capsys, *common, "--output-transform", tmp_path / "missing" / "t.tfm")
    assert_one_line_error(code, err, 2, "does not exist")
    code, _, err = run(capsys, *common, "--output-transform", tmp_path / "t.tfm", "--output-image", moving)
    assert_one_line_error(code, err, 2, "overwrite the input")


# ----------------------------------------------------------------------------- presets
def test_presets_lists_all_names(capsys):
    code, out, _ = run(capsys, "presets")
    assert code == 0
    names = [line.split()[0] for line in out.strip().splitlines()]
    assert names == PRESET_NAMES
    assert all(len(line.split()) > 1 for line in out.strip().splitlines()), "every preset needs a description"


def test_lambda_errors_are_one_line(capsys, pair, tmp_path):
    fixed, moving = pair
    common = ["register", "--fixed", fixed, "--moving", moving, "--output-transform", tmp_path / "t.h5"]
    code, _, err = run(capsys, *common, "--preset", "brain-mri-hypermorph", "--lambda", "1.5")
    assert_one_line_error(code, err, 2, "--lambda", "<= 1")
    code, _, err = run(capsys, *common, "--preset", "brain-mri", "--lambda", "0.3")
    assert_one_line_error(code, err, 2, "no HyperMorph network stage")
    assert not (tmp_path / "t.h5").exists()


def test_learned_preset_writes_an_invertible_result(capsys, pair, tmp_path):
    """One forward pass on the blob pair: transform and inverse written, a warning for the
    blob's intensities (nothing like a skull-stripped T1), exit 0."""
    fixed, moving = pair
    code, out, err = run(capsys, "register", "--fixed", fixed, "--moving", moving, "--preset",
                         "brain-mri-hypermorph", "--lambda", "0.8", "--output-transform", tmp_path / "t.h5",
                         "--output-inverse", tmp_path / "inv.h5", "--threads", "1", "--quiet")
    assert code == 0, err
    assert (tmp_path / "t.h5").is_file() and (tmp_path / "inv.h5").is_file()
    assert "regsuite: warning: the fixed image's intensities are unlike" in err


def test_presets_show_and_copy(capsys, tmp_path):
    from regsuite.engine.config import load_preset, preset_path

    code, out, _ = run(capsys, "presets", "--show", "lung-ct")
    assert code == 0
    assert json.loads(out) == json.loads(preset_path("lung-ct").read_text())
    copy = tmp_path / "mine.json"
    code, _, _ = run(capsys, "presets", "--copy", "rigid", copy)
    assert code == 0
    assert load_preset(copy) == load_preset("rigid")
    code, _, err = run(capsys, "presets", "--copy", "affine", copy)
    assert_one_line_error(code, err, 2, "already exists")
    assert load_preset(copy) == load_preset("rigid")
    assert run(capsys, "presets", "--copy", "affine", copy, "--force")[0] == 0
    assert load_preset(copy) == load_preset("affine")


# ----------------------------------------------------------------------------- apply
def test_apply_translation_matches_sitk_resample(capsys, tmp_path):
    rng = np.random.default_rng(3)
    moving_image = sitk.GetImageFromArray(rng.integers(-500, 500, (14, 16, 18)).astype(np.int16))
    moving_image.SetSpacing((1.0, 1.5, 2.0))
    moving_image.SetOrigin((5.0, -3.0, 2.0))
    reference = sitk.Image([12, 10, 9], sitk.sitkUInt8)
    reference.SetSpacing((1.2, 1.2, 2.5))
    reference.SetOrigin((4.0, -2.0, 1.0))
    shift = sitk.TranslationTransform(3, (6.3, -1.1, 3.7))
    paths = {name: tmp_path / name for name in ("moving.nrrd", "reference.nii.gz", "shift.tfm", "out.nrrd")}
    sitk.WriteImage(moving_image, str(paths["moving.nrrd"]))
    sitk.WriteImage(reference, str(paths["reference.nii.gz"]))
    sitk.WriteTransform(shift, str(paths["shift.tfm"]))
    for interpolation, interpolator in (("linear", sitk.sitkLinear), ("nearest", sitk.sitkNearestNeighbor)):
        code, _, err = run(capsys, "apply", "--reference", paths["reference.nii.gz"], "--input", paths["moving.nrrd"],
                           "--transform", paths["shift.tfm"], "--output", paths["out.nrrd"],
                           "--interpolation", interpolation, "--default-value", "-7")
        assert code == 0, err
        out = sitk.ReadImage(str(paths["out.nrrd"]))
        # Interpolated in float64, then rounded to the input's int16 (ITK's own cast truncates).
        values = sitk.Resample(moving_image, sitk.ReadImage(str(paths["reference.nii.gz"])), shift,
                               interpolator, -7.0, sitk.sitkFloat64)
        expected = sitk.GetImageFromArray(np.rint(sitk.GetArrayFromImage(values)).astype(np.int16))
        assert out.GetPixelID() == sitk.sitkInt16
        assert out.GetSize() == reference.GetSize()
        assert np.allclose(out.GetOrigin(), reference.GetOrigin()) and np.allclose(out.GetSpacing(), reference.GetSpacing())
        assert np.array_equal(sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(expected))
        assert (sitk.GetArrayFromImage(out) == -7).any()  # part of the reference lies outside


def test_apply_integer_shift_known_answer(capsys, tmp_path):
    values = np.arange(10 * 10 * 10, dtype=np.float32).reshape(10, 10, 10)
    image = sitk.GetImageFromArray(values)
    sitk.WriteImage(image, str(tmp_path / "in.mha"))
    sitk.WriteTransform(sitk.TranslationTransform(3, (2.0, 0.0, -1.0)), str(tmp_path / "t.txt"))
    code, _, _ = run(capsys, "apply", "--reference", tmp_path / "in.mha", "--input", tmp_path / "in.mha",
                     "--transform", tmp_path / "t.txt", "--output", tmp_path / "out.mha")
    assert code == 0
    out = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out.mha")))
    # output(x, y, z) = input(x + 2, y, z - 1); arrays are indexed [z, y, x]
    assert np.array_equal(out[1:, :, :-2], values[:-1, :, 2:])
    assert np.all(out[0] == 0) and np.all(out[:, :, -2:] == 0)


def test_interrupt_leaves_no_partial_output(capsys, tmp_path, pair, monkeypatch):
    fixed, moving = pair
    sitk.WriteTransform(sitk.TranslationTransform(3), str(tmp_path / "t.tfm"))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.sitk, "Resample", interrupted)
    code, _, err = run(capsys, "apply", "--reference", fixed, "--input", moving, "--transform", tmp_path / "t.tfm",
                       "--output", tmp_path / "out.nii.gz")
    assert code == 130
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fixed.nii.gz", "moving.nii.gz", "t.tfm"]


def test_staged_outputs_are_all_or_nothing(tmp_path):
    def first(tmp: str) -> None:
        Path(tmp).write_text("written")

    def second(tmp: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with contextlib.ExitStack() as stack:
            cli.stage_outputs(stack, [(str(tmp_path / "a.txt"), first), (str(tmp_path / "b.txt"), second)])
    assert list(tmp_path.iterdir()) == []
    with contextlib.ExitStack() as stack:
        cli.stage_outputs(stack, [(str(tmp_path / "a.txt"), first), (None, second)])
        assert not (tmp_path / "a.txt").exists()  # moved into place only when the stack closes
    assert (tmp_path / "a.txt").read_text() == "written"


# ----------------------------------------------------------------------------- evaluate
def test_evaluate_landmarks_and_jacobian(capsys, tmp_path, pair):
    fixed, _ = pair
    fixed_points = np.array([[0.0, 0.0, 0.0], [10.0, 5.0, -3.0], [4.0, 4.0, 4.0]])
    (tmp_path / "fp.txt").write_text("point\n3\n" + "\n".join(" ".join(map(str, p)) for p in fixed_points) + "\n")
    moving_points = fixed_points + np.array([3.0, 4.0, 0.0])
    (tmp_path / "mp.txt").write_text("point\n3\n" + "\n".join(" ".join(map(str, p)) for p in moving_points) + "\n")
    sitk.WriteTransform(sitk.TranslationTransform(3, (3.0, 4.0, 0.0)), str(tmp_path / "t.tfm"))
    code, out, err = run(capsys, "evaluate", "--transform", tmp_path / "t.tfm", "--fixed", fixed,
                         "--fixed-points", tmp_path / "fp.txt", "--moving-points", tmp_path / "mp.txt",
                         "--json", tmp_path / "eval.json")
    assert code == 0, err
    assert "landmark error before" in out
    results = json.loads((tmp_path / "eval.json").read_text())
    assert results["landmarks"]["before"]["mean"] == pytest.approx(5.0)
    assert results["landmarks"]["after"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert results["jacobian"]["mean"] == pytest.approx(1.0)
    code, _, err = run(capsys, "evaluate", "--fixed-points", tmp_path / "fp.txt")
    assert_one_line_error(code, err, 2, "moving points")


# ----------------------------------------------------------------------------- register / demo
def test_register_rigid_recovers_shift(capsys, tmp_path, pair):
    fixed, moving = pair
    out = {name: tmp_path / name for name in ("t.tfm", "w.nii.gz", "inv.tfm", "log.json", "field.nii.gz", "jac.nii.gz")}
    code, stdout, err = run(capsys, "register", "--fixed", fixed, "--moving", moving, "--preset", "rigid",
                            "--output-transform", out["t.tfm"], "--output-image", out["w.nii.gz"],
                            "--output-inverse", out["inv.tfm"], "--output-field", out["field.nii.gz"],
                            "--output-jacobian", out["jac.nii.gz"], "--log-json", out["log.json"],
                            "--device", "cpu", "--threads", "1")
    assert code == 0, err
    transform = sitk.ReadTransform(str(out["t.tfm"]))
    centre = (23.0, 23.0, 23.0)
    moved = np.array(transform.TransformPoint(centre)) - np.array(centre)
    assert np.allclose(moved, (3.0, 0.0, 0.0), atol=0.3), moved
    inverse = sitk.ReadTransform(str(out["inv.tfm"]))
    assert np.allclose(inverse.TransformPoint(transform.TransformPoint(centre)), centre, atol=1e-4)
    field = sitk.ReadImage(str(out["field.nii.gz"]))
    assert field.GetPixelID() == sitk.sitkVectorFloat32  # as ANTs and Greedy write fields
    assert np.allclose(field[11, 11, 11], moved, atol=0.3)
    jac = sitk.GetArrayFromImage(sitk.ReadImage(str(out["jac.nii.gz"])))
    assert np.allclose(jac, 1.0, atol=1e-3)  # rigid: volume preserved
    log = json.loads(out["log.json"].read_text())
    assert log["history"] and {"stage", "level", "iteration", "metric"} <= set(log["history"][0])
    warped = sitk.GetArrayFromImage(sitk.ReadImage(str(out["w.nii.gz"])))
    target = sitk.GetArrayFromImage(sitk.ReadImage(str(fixed)))
    before = sitk.GetArrayFromImage(sitk.ReadImage(str(moving)))
    assert np.abs(warped - target).mean() < 0.25 * np.abs(before - target).mean()
    assert "\r" in err or "stage 1/" in err  # progress on stderr
    assert "wrote" in stdout


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
def test_demo_quick_writes_every_output(tmp_path):
    folder = tmp_path / "demo"
    process = subprocess.run([sys.executable, "-m", "regsuite", "demo", "--quick", "--output-dir", str(folder),
                              "--device", "cpu"],
                             capture_output=True, text=True, timeout=300,
                             env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "RegistrationSuite")})
    assert process.returncode == 0, process.stderr
    from regsuite.cli.demo import DEMO_FILES

    for name in DEMO_FILES.values():
        assert (folder / name).is_file(), name
        assert (folder / name).stat().st_size > 100, name
    width, height = png_size(folder / "overview.png")
    assert width >= 1000 and height >= 800
    assert (folder / "overview.png").stat().st_size > 50_000
    assert "landmark error" in process.stdout
    evaluation = json.loads((folder / "evaluation.json").read_text())
    from regsuite.data import sample_paths

    paths = sample_paths()
    fixed_points = np.loadtxt(paths["fixed_points"], skiprows=2)
    moving_points = np.loadtxt(paths["moving_points"], skiprows=2)
    initial_error = np.linalg.norm(fixed_points - moving_points, axis=1).mean()
    assert evaluation["landmarks"]["before"]["mean"] == pytest.approx(initial_error)
    assert evaluation["landmarks"]["after"]["mean"] < initial_error
    warped = sitk.ReadImage(str(folder / "moving_warped.nii.gz"))
    assert warped.GetPixelID() == sitk.sitkInt16
    assert warped.GetSize() == sitk.ReadImage(str(paths["fixed"])).GetSize()


# ----------------------------------------------------------------------------- sample data, progress
def test_sample_data_is_consistent():
    from regsuite.data import sample_paths

    paths = sample_paths()
    assert set(paths) == {"fixed", "moving", "fixed_mask", "fixed_points", "moving_points"}
    fixed = sitk.ReadImage(str(paths["fixed"]))
    mask = sitk.ReadImage(str(paths["fixed_mask"]))
    assert fixed.GetPixelID() == sitk.sitkInt16
    assert np.allclose(fixed.GetSpacing(), (2.732, 2.732, 5.0))
    assert mask.GetSize() == fixed.GetSize() and np.allclose(mask.GetOrigin(), fixed.GetOrigin())
    points = np.loadtxt(paths["fixed_points"], skiprows=2)
    assert points.shape == (51, 3)
    assert np.loadtxt(paths["moving_points"], skiprows=2).shape == (51, 3)
    # every fixed landmark lies inside the fixed image and most inside the lung mask
    index = np.array([fixed.TransformPhysicalPointToIndex(tuple(p)) for p in points])
    assert np.all(index >= 0) and np.all(index < np.array(fixed.GetSize()))
    inside = [mask[tuple(int(v) for v in i)] for i in index]
    assert np.mean(inside) > 0.8
    for path in paths.values():
        assert path.stat().st_size < 450_000


def test_progress_bar_interactive_and_log_modes():
    import io
    from types import SimpleNamespace

    from regsuite.cli.progress import ProgressBar

    def event(stage, level, iteration):
        return SimpleNamespace(stage=stage, stages=2, stage_name="affine" if stage == 1 else "svf", level=level,
                               levels=2, iteration=iteration, iterations=50, metric=-0.25, elapsed=1.0)

    stream = io.StringIO()
    bar = ProgressBar(stream, interactive=True, rate=0)
    for args in ((1, 1, 1), (1, 1, 2), (2, 1, 1)):
        bar(event(*args))
    bar.close()
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert "stage 2/2 svf | level 1/2 | iter 1/50" in text
    log = io.StringIO()
    bar = ProgressBar(log, interactive=False)
    for args in ((1, 1, 1), (1, 1, 2), (1, 2, 1), (1, 2, 7)):
        bar(event(*args))
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert [line.split(" | ")[2] for line in lines] == ["iter 1/50", "iter 2/50", "iter 1/50", "iter 7/50"]
