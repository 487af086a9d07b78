"""The batch script's ``main`` on real MRML classes (slicer-core) with real files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from optional_modules import require_module

require_module("slicer", "the batch script runs on the MRML classes of slicer-core")

from regsuite.data import sample_paths  # noqa: E402
from regsuite.io.points import read_points  # noqa: E402

AFFINE_ONLY = {"name": "lung-affine", "initialization": "moments", "intensity": {"mode": "window", "window": [-1000, 0]},
               "stages": [{"model": "affine", "metric": "ncc", "learning_rate": 1.0,
                           "levels": [{"shrink": 2, "smoothing": 1, "iterations": 60},
                                      {"shrink": 1, "smoothing": 0, "iterations": 30}]}]}


@pytest.fixture()
def batch(mrml):
    from RegSuiteRegistrationLib import batch as module

    return module


def test_batch_registers_sample_files_and_writes_outputs(batch, mrml, tmp_path, capsys):
    paths = sample_paths()
    preset = tmp_path / "lung-affine.json"
    preset.write_text(json.dumps(AFFINE_ONLY))
    out_t, out_v = tmp_path / "moving_to_fixed.h5", tmp_path / "registered.nrrd"
    inputs = {p: p.read_bytes() for p in (paths["fixed"], paths["moving"], paths["fixed_mask"])}
    code = batch.main(["--fixed", str(paths["fixed"]), "--moving", str(paths["moving"]), "--preset", str(preset),
                       "--fixed-mask", str(paths["fixed_mask"]), "--output-transform", str(out_t),
                       "--output-volume", str(out_v), "--threads", "2"], scene=mrml.scene)
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "Registered in" in printed.out
    transform = sitk.ReadTransform(str(out_t))  # written by Slicer's storage node, read by SimpleITK
    fixed_points, moving_points = read_points(paths["fixed_points"]), read_points(paths["moving_points"])
    mapped = np.array([transform.TransformPoint(tuple(p)) for p in fixed_points])
    before = np.linalg.norm(fixed_points - moving_points, axis=1).mean()
    after = np.linalg.norm(mapped - moving_points, axis=1).mean()
    assert after < 0.4 * before, (before, after)
    fixed = sitk.ReadImage(str(paths["fixed"]))
    registered = sitk.ReadImage(str(out_v))
    assert registered.GetSize() == fixed.GetSize()
    assert np.allclose(registered.GetOrigin(), fixed.GetOrigin(), atol=1e-3)
    moving = sitk.ReadImage(str(paths["moving"]), sitk.sitkFloat32)
    background = float(sitk.GetArrayViewFromImage(moving).min())  # outside the moving image: its minimum
    expected = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, background)
    diff = np.abs(sitk.GetArrayFromImage(registered).astype(float) - sitk.GetArrayFromImage(expected))
    # The volume keeps the moving image's int16 type: the linear values are rounded to it, so every
    # voxel is within 0.5 HU of the float resampling; 1e-3 HU for float noise (the transform read
    # back from the file and the one the Logic resampled with agree to far below that).
    assert diff.max() < 0.5 + 1e-3
    assert all(p.read_bytes() == data for p, data in inputs.items())  # inputs untouched
    assert sorted(f.name for f in tmp_path.iterdir()) == ["lung-affine.json", "moving_to_fixed.h5", "registered.nrrd"]


@pytest.mark.parametrize("change, words", [
    ({"--fixed": "missing.nrrd"}, "does not exist"),
    ({"--preset": "no-such-preset"}, "unknown preset"),
    ({"--output-transform": "nofolder/out.h5"}, "does not exist"),
])
def test_batch_bad_input_exits_2_with_one_line_and_no_output(batch, mrml, tmp_path, capsys, change, words):
    paths = sample_paths()
    args = {"--fixed": str(paths["fixed"]), "--moving": str(paths["moving"]), "--preset": "rigid",
            "--output-transform": str(tmp_path / "t.h5")}
    args.update({k: str(tmp_path / v) if k != "--preset" else v for k, v in change.items()})
    code = batch.main([item for pair in args.items() for item in pair], scene=mrml.scene)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and words in err and "\n" not in err, err
    assert not (tmp_path / "t.h5").exists()


def test_batch_missing_required_option_is_one_line(batch, mrml, capsys):
    assert batch.main(["--fixed", "a.nrrd"], scene=mrml.scene) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--moving" in err and "\n" not in err


def _files(folder) -> dict[str, tuple[bytes, int]]:
    """Every entry of ``folder`` (hidden ones too) with bytes and mtime."""
    return {p.name: (p.read_bytes() if p.is_file() else b"", p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_batch_detached_and_upper_case_outputs_with_capped_threads(batch, mrml, tmp_path, capsys):
    from regsuite.io.safety import usable_cores

    paths = sample_paths()
    preset = tmp_path / "lung-affine.json"
    preset.write_text(json.dumps(AFFINE_ONLY))
    code = batch.main(["--fixed", str(paths["fixed"]), "--moving", str(paths["moving"]), "--preset", str(preset),
                       "--output-transform", str(tmp_path / "T.H5"), "--output-volume", str(tmp_path / "reg.nhdr"),
                       "--threads", "100000", "--quiet"], scene=mrml.scene)
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert printed.err.strip() == (f"regsuite: warning: --threads 100000 is more than the {usable_cores()} "
                                   f"usable CPU cores; using {usable_cores()}")
    # the pixel data sit beside the header under the name the header gives, nothing hidden is left
    assert sorted(f.name for f in tmp_path.iterdir()) == ["T.H5", "lung-affine.json", "reg.nhdr", "reg.raw.gz"]
    assert "data file: reg.raw.gz" in (tmp_path / "reg.nhdr").read_text(errors="replace")
    assert sitk.ReadImage(str(tmp_path / "reg.nhdr")).GetSize() == sitk.ReadImage(str(paths["fixed"])).GetSize()
    assert sitk.ReadTransform(str(tmp_path / "T.H5")).GetDimension() == 3


def test_batch_hostile_inputs_and_outputs_are_refused_before_work(batch, mrml, tmp_path, capsys):
    paths = sample_paths()
    preset = tmp_path / "mine.json"
    preset.write_text(json.dumps(AFFINE_ONLY))
    whole = tmp_path / "fixed.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(paths["fixed"])), str(whole))
    (tmp_path / "cut.nii.gz").write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    skewed = sitk.ReadImage(str(paths["fixed"]))
    skewed.SetDirection((1.0, 0.0, 0.0, 0.25, 1.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(skewed, str(tmp_path / "skew.mha"))
    (tmp_path / "dir.h5").mkdir()
    os.link(preset, tmp_path / "alias.h5")  # the preset file under a transform's name (hard link)
    before = _files(tmp_path)
    base = {"--fixed": str(whole), "--moving": str(paths["moving"]), "--preset": str(preset),
            "--output-transform": str(tmp_path / "t.h5")}
    for change, words in (({"--output-transform": str(tmp_path / "alias.h5")}, "would overwrite the input"),
                          ({"--output-volume": str(tmp_path / "." / "fixed.nii.gz")}, "would overwrite the input"),
                          ({"--output-transform": str(tmp_path / "dir.h5")}, "existing folder"),
                          ({"--output-transform": str(tmp_path / "t.xfm")}, "extension"),
                          ({"--fixed": str(tmp_path / "cut.nii.gz")}, "truncated"),
                          ({"--moving": str(tmp_path / "skew.mha")}, "not orthonormal"),
                          ({"--seed": str(2**64)}, "--seed")):
        args = {**base, **change}
        code = batch.main([item for pair in args.items() for item in pair], scene=mrml.scene)
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("error:") and words in err and "\n" not in err, err
        assert ".tmp" not in err
    assert _files(tmp_path) == before
