"""Tests of the benchmark harness (benchmarks/): conversions, measures, reporting.

The peer-conversion tests run the real tools on tiny synthetic volumes and skip when the
tool's package is not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
for entry in (REPO, REPO / "RegistrationSuite"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

from benchmarks import metrics, report, suites, verify  # noqa: E402
from benchmarks.peers._common import ras_to_lps_affine  # noqa: E402

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PERMUTED = (0.0, 0.0, 1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # the OASIS direction matrix


def _grid(size=(20, 18, 16), spacing=(1.0, 1.5, 2.0), direction=PERMUTED) -> sitk.Image:
    image = sitk.Image(list(size), sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetOrigin((-10.0, 5.0, 3.0))
    image.SetDirection(direction)
    return image


def _blob_pair(shift_mm=(2.0, -1.5, 1.0), size=32) -> tuple[sitk.Image, sitk.Image]:
    """Two smooth blobby images; the moving one is the fixed one shifted by ``shift_mm``."""
    z, y, x = np.mgrid[0:size, 0:size, 0:size].astype(np.float32)
    c = (size - 1) / 2.0

    def blobs(dx, dy, dz):
        out = np.exp(-(((x - c - dx) / 7) ** 2 + ((y - c - dy) / 5) ** 2 + ((z - c - dz) / 6) ** 2))
        out += 0.6 * np.exp(-(((x - c - 6 - dx) / 3) ** 2 + ((y - c + 5 - dy) / 3) ** 2 + ((z - c - dz) / 3) ** 2))
        return (100 * out).astype(np.float32)

    fixed = sitk.GetImageFromArray(blobs(0, 0, 0))
    moving = sitk.GetImageFromArray(blobs(*shift_mm))
    return fixed, moving


def test_ras_to_lps_affine_flips_first_two_axes():
    ras = np.eye(4)
    ras[:3, :3] = [[1.1, 0.0, 0.0], [0.0, 1.0, 0.2], [0.0, 0.0, 0.9]]
    ras[:3, 3] = (1.0, 2.0, 3.0)
    lps = ras_to_lps_affine(ras)
    point_lps = np.array([4.0, -5.0, 6.0])
    flip = np.array([-1.0, -1.0, 1.0])
    expected = flip * (ras[:3, :3] @ (flip * point_lps) + ras[:3, 3])
    assert np.allclose(lps.TransformPoint(tuple(point_lps)), expected)


@pytest.mark.parametrize("direction", [PERMUTED, (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)])
def test_local_jacobian_matches_affine_determinant_on_oblique_grid(direction):
    reference = _grid(direction=direction)
    tx = sitk.AffineTransform(3)
    matrix = np.array([[1.1, 0.2, 0.0], [0.0, 0.9, 0.3], [0.1, 0.0, 1.2]])
    tx.SetMatrix(matrix.ravel().tolist())
    det = metrics.jacobian_determinant_array(metrics.dense_displacement(tx, reference), reference)
    assert np.allclose(det, np.linalg.det(matrix), rtol=1e-4)


def test_local_and_project_jacobian_agree_on_a_nonlinear_field():
    from regsuite.evaluation.jacobian import jacobian_determinant

    reference = _grid()
    z, y, x = np.mgrid[0:16, 0:18, 0:20].astype(np.float64)
    field = np.stack([0.8 * np.sin(x / 4.0), 0.5 * np.cos(y / 5.0) * z / 16, 0.6 * np.sin(z / 3.0)], axis=-1)
    image = sitk.GetImageFromArray(field, isVector=True)
    image.CopyInformation(reference)
    tx = sitk.DisplacementFieldTransform(sitk.Cast(image, sitk.sitkVectorFloat64))
    ours = metrics.jacobian_determinant_array(metrics.dense_displacement(tx, reference), reference)
    theirs = sitk.GetArrayFromImage(jacobian_determinant(tx, reference))
    inner = (slice(1, -1),) * 3  # borders differ (one-sided vs extrapolated differences)
    assert np.allclose(ours[inner], theirs[inner], atol=1e-4)


def test_mean_dice_counts_labels_present_in_both_maps():
    fixed = sitk.Image([10, 10, 10], sitk.sitkUInt8)
    fixed[0:4, :, :] = 1
    fixed[6:10, :, :] = 2
    fixed[4:5, 0:2, 0:2] = 7          # only in the fixed map: ignored
    moving = sitk.Image([10, 10, 10], sitk.sitkUInt8)
    moving[0:4, :, :] = 1
    moving[6:10, :, :] = 2
    shift = sitk.TranslationTransform(3, (2.0, 0.0, 0.0))  # fixed x -> moving x + 2
    mean, per_label = metrics.mean_dice(fixed, moving, shift)
    assert sorted(per_label) == [1, 2]
    assert per_label[1] == pytest.approx(2 * 2 / (4 + 2))   # warped label 1 covers x in [0, 2)
    assert per_label[2] == pytest.approx(2 * 2 / (4 + 4))   # warped label 2 covers x in [4, 8)
    assert mean == pytest.approx((2 / 3 + 1 / 2) / 2)
    warped = sitk.GetArrayFromImage(metrics.warp_labels(moving, fixed, shift))
    local = metrics.dice_per_label(sitk.GetArrayFromImage(fixed), warped, [1, 2])
    assert local == pytest.approx(per_label)


def test_landmark_errors_and_mapping_distance():
    fixed = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    moving = fixed + (3.0, 4.0, 0.0)
    shift = sitk.TranslationTransform(3, (3.0, 4.0, 0.0))
    assert np.allclose(metrics.landmark_errors(shift, fixed, moving), 0.0)
    assert np.allclose(metrics.landmark_errors(sitk.Transform(3, sitk.sitkIdentity), fixed, moving), 5.0)
    assert np.allclose(metrics.mapping_distance(shift, sitk.Transform(3, sitk.sitkIdentity), fixed), 5.0)


def test_load_transform_reads_a_displacement_field_file(tmp_path):
    reference = _grid()
    field = sitk.Image(reference.GetSize(), sitk.sitkVectorFloat64, 3)
    field.CopyInformation(reference)
    field = field + 0.0
    array = sitk.GetArrayFromImage(field)
    array[..., 0] = 2.5
    image = sitk.GetImageFromArray(array, isVector=True)
    image.CopyInformation(reference)
    path = tmp_path / "field.nii.gz"
    sitk.WriteImage(image, str(path))
    inside = reference.TransformContinuousIndexToPhysicalPoint((5.0, 5.0, 5.0))
    mapped = metrics.load_transform(path).TransformPoint(inside)
    assert np.allclose(np.subtract(mapped, inside), (2.5, 0.0, 0.0))


def test_conversion_check_separates_right_and_wrong_transforms(tmp_path):
    fixed, moving = _blob_pair()
    for name, image in (("fixed.nii.gz", fixed), ("moving.nii.gz", moving)):
        sitk.WriteImage(image, str(tmp_path / name))
    right = sitk.TranslationTransform(3, (2.0, -1.5, 1.0))
    tool = sitk.Resample(moving, fixed, right, sitk.sitkBSpline, 0.0)
    sitk.WriteImage(tool, str(tmp_path / "tool.nii.gz"))
    sitk.WriteTransform(right, str(tmp_path / "right.tfm"))
    sitk.WriteTransform(right.GetInverse(), str(tmp_path / "wrong.tfm"))
    corr = lambda t: verify.conversion_correlation(tmp_path / "fixed.nii.gz", tmp_path / "moving.nii.gz",  # noqa: E731
                                                   tmp_path / t, tmp_path / "tool.nii.gz")
    assert corr("right.tfm") > verify.THRESHOLD
    assert corr("wrong.tfm") < verify.THRESHOLD


@pytest.mark.parametrize("tool,package", [("greedy", "picsl_greedy"), ("ants_syn", "ants"),
                                          ("sitk_bspline", "SimpleITK"),
                                          pytest.param("elastix", "itk", marks=pytest.mark.slow)])
def test_peer_conversion_reproduces_the_tools_own_warp(tmp_path, tool, package):
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed")
    module = importlib.import_module(f"benchmarks.peers.{tool}")
    fixed, moving = _blob_pair(shift_mm=(3.0, -2.0, 1.5))
    fixed_path, moving_path = str(tmp_path / "fixed.nii.gz"), str(tmp_path / "moving.nii.gz")
    sitk.WriteImage(fixed, fixed_path)
    sitk.WriteImage(moving, moving_path)
    result = module.run(fixed_path, moving_path, str(tmp_path / "out"), threads=1, suite="brain")
    assert verify.conversion_correlation(fixed_path, moving_path, result["transform_path"],
                                         result["tool_warped_path"]) > verify.THRESHOLD
    # and the registration recovered the shift near the blob centre (moving = fixed shifted by +s)
    centre = fixed.TransformContinuousIndexToPhysicalPoint((15.5, 15.5, 15.5))
    mapped = metrics.load_transform(result["transform_path"]).TransformPoint(centre)
    assert np.allclose(np.subtract(mapped, centre), (3.0, -2.0, 1.5), atol=0.75)


def test_child_peak_memory_does_not_inherit_the_parents_size():
    import subprocess

    ballast = np.ones(400 * 1024 * 1024 // 8)  # make this (parent) process ~400 MB larger
    code = "from benchmarks.peers._common import peak_rss_mb; print(peak_rss_mb())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(REPO), env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert float(out.stdout) < 300.0
    code = ("import numpy as np; a = np.ones(500 * 1024 * 1024 // 8); "
            "from benchmarks.peers._common import peak_rss_mb; print(peak_rss_mb())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(REPO), env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert 500.0 < float(out.stdout) < 900.0
    del ballast


def test_markdown_table_and_summary():
    records = [
        {"suite": "brain", "pair": "1-2", "tool": "greedy", "status": "ok", "dice": 0.5, "seconds": 10.0},
        {"suite": "brain", "pair": "3-4", "tool": "greedy", "status": "ok", "dice": 0.7, "seconds": 30.0},
        {"suite": "brain", "pair": "1-2", "tool": "ants", "status": "failed", "error": "boom"},
    ]
    text = report.markdown(records, {"cpu": "test"}, ["greedy", "ants"])
    assert "| greedy | 2/2 | 0.600 ± 0.141 |" in text
    assert "| ants | 0/1 |" in text and "ants on 1-2 failed: boom" in text
    assert report.summarize(records, "seconds", 1) == "20.0 ± 14.1"


def test_cases_and_command_line_errors(tmp_path):
    cases = suites.brain_cases(tmp_path, 3)
    assert [c.pair for c in cases] == ["1-2", "3-4", "5-6"]
    assert cases[0].fixed.endswith("OASIS-TRT-20-1/t1weighted_brain.nii.gz")
    from benchmarks import run

    with pytest.raises(SystemExit):
        run.parse_args(["--tools", "greedy,nosuchtool", "--data", str(tmp_path)])
    args = run.parse_args(["--tools", "greedy, ants", "--data", str(tmp_path), "--threads", "3"])
    assert args.tools == ["greedy", "ants"]
    env = run.child_environment(3)
    assert env["OMP_NUM_THREADS"] == env["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] == "3"
    lung = suites.lung_cases(tmp_path)[0]
    assert "--fixed-mask" in run.child_command("greedy", lung, tmp_path, 2)
    assert "--fixed-mask" not in run.child_command("elastix", lung, tmp_path, 2, use_mask=False)
    assert run.parse_args(["--no-mask", "elastix", "--data", str(tmp_path)]).no_mask == {"elastix"}


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
def test_lung_landmarks_before_registration_are_about_35_mm():
    case = suites.lung_cases(SHARED)[0]
    fixed_points = metrics.read_points(case.extra["fixed_points"])
    moving_points = metrics.read_points(case.extra["moving_points"])
    errors = metrics.landmark_errors(sitk.Transform(3, sitk.sitkIdentity), fixed_points, moving_points)
    assert len(errors) == 51 and 25.0 < errors.mean() < 45.0


def test_brain_variants_are_valid_presets_that_change_only_the_deformable_stage():
    """Every ablation row of benchmarks/brain_variants.py loads as a preset and differs from the
    shipped brain-mri only in its last stage."""
    from benchmarks import brain_variants
    from regsuite.engine.config import PRESET_DIR, load_preset

    shipped = json.loads((PRESET_DIR / "brain-mri.json").read_text())
    assert brain_variants.ABLATION["brain-mri (shipped)"] == {}
    for name, changes in brain_variants.ABLATION.items():
        variant = brain_variants.apply_variant(shipped, changes)
        load_preset(variant)  # raises PresetError on a bad key or value
        assert variant["stages"][:-1] == shipped["stages"][:-1], name
        assert all(variant["stages"][-1][key] == value for key, value in changes.items()), name
    assert shipped == json.loads((PRESET_DIR / "brain-mri.json").read_text())  # the preset itself untouched


def test_brain_pair_split_and_explicit_pairs(tmp_path):
    """The tune/confirm sets split the subjects (1-5 vs 6-10) and reuse no pair of BRAIN_PAIRS;
    --brain-pairs picks sets or explicit pairs, --regsuite-preset reaches only the regsuite child."""
    from benchmarks import run

    tune, confirm = suites.BRAIN_PAIR_SETS["tune"], suites.BRAIN_PAIR_SETS["confirm"]
    assert {s for pair in tune for s in pair} == {1, 2, 3, 4, 5}
    assert {s for pair in confirm for s in pair} == {6, 7, 8, 9, 10}
    assert not (set(tune) | set(confirm)) & set(suites.BRAIN_PAIRS)
    assert suites.parse_brain_pairs("confirm") == confirm
    assert suites.parse_brain_pairs(" 6-8,10-7") == [(6, 8), (10, 7)]
    for bad in ("6-6", "6-11", "6:8", "tune,6-8"):
        with pytest.raises(ValueError, match="brain pair"):
            suites.parse_brain_pairs(bad)
    cases = suites.cases("brain", tmp_path, None, [(6, 8), (10, 7)])
    assert [c.pair for c in cases] == ["6-8", "10-7"]
    assert cases[1].moving.endswith("OASIS-TRT-20-7/t1weighted_brain.nii.gz")
    assert [c.pair for c in suites.cases("brain", tmp_path, 1, tune)] == ["1-3"]

    preset = tmp_path / "p.json"
    preset.write_text("{}")
    args = run.parse_args(["--brain-pairs", "tune", "--regsuite-preset", str(preset), "--data", str(tmp_path)])
    assert args.brain_pairs == tune and args.regsuite_preset == str(preset.resolve())
    with pytest.raises(SystemExit):
        run.parse_args(["--brain-pairs", "6-x", "--data", str(tmp_path)])
    with pytest.raises(SystemExit):
        run.parse_args(["--regsuite-preset", str(tmp_path / "missing.json"), "--data", str(tmp_path)])
    assert run.parse_args(["--data", str(tmp_path)]).brain_pairs is None
    command = run.child_command("regsuite", cases[0], tmp_path, 2, preset=str(preset))
    assert command[-2:] == ["--preset", str(preset)]
    assert "--preset" not in run.child_command("greedy", cases[0], tmp_path, 2, preset=str(preset))


def test_regsuite_preset_tools_parse_label_and_reach_the_child(tmp_path):
    """--tools regsuite@PRESET[:LAMBDA]: one labelled tool per preset (and lambda), its own run
    folder, the preset and lambda passed to the worker; plain regsuite and --regsuite-preset unchanged."""
    from benchmarks import run

    spec = run.parse_tool(" regsuite@brain-mri-hypermorph:0.30 ")
    assert spec == run.ToolSpec("regsuite@brain-mri-hypermorph:0.3", "regsuite", "brain-mri-hypermorph", 0.3)
    assert spec.folder == "regsuite@brain-mri-hypermorph_lambda0.3"
    assert run.parse_tool("regsuite@brain-mri-hypermorph:1").name == "regsuite@brain-mri-hypermorph:1"
    assert run.parse_tool("regsuite@brain-mri-fast") == run.ToolSpec("regsuite@brain-mri-fast", "regsuite",
                                                                     "brain-mri-fast", None)
    assert run.parse_tool("ants") == run.ToolSpec("ants", "ants")
    preset = tmp_path / "cand.json"
    preset.write_text((REPO / "RegistrationSuite/regsuite/presets/brain-mri.json").read_text())
    from_file = run.parse_tool(f"regsuite@{preset}")
    assert (from_file.name, from_file.preset) == ("regsuite@cand.json", str(preset.resolve()))
    for bad, message in (("nosuchtool", "unknown tool"), ("greedy@brain-mri", "only regsuite"),
                         ("regsuite@", "no preset"), ("regsuite@brain-mri-hypermorph:1.5", r"\[0, 1\]"),
                         ("regsuite@brain-mri-hypermorph:x", "not a number"),
                         ("regsuite@brain-mri:0.3", "HyperMorph"), ("regsuite@no-such-preset", "unknown preset"),
                         (f"regsuite@{tmp_path / 'missing.json'}", "not found")):
        with pytest.raises(ValueError, match=message):
            run.parse_tool(bad)
    with pytest.raises(ValueError, match="given twice"):
        run.parse_tools("greedy,regsuite@brain-mri-fast, regsuite@brain-mri-fast")

    tools = "regsuite,regsuite@brain-mri,regsuite@brain-mri-fast,regsuite@brain-mri-hypermorph:0.3,greedy"
    args = run.parse_args(["--tools", tools, "--regsuite-preset", "lung-ct", "--data", str(tmp_path),
                           "--no-mask", "regsuite@brain-mri-fast,greedy"])
    assert args.tools == tools.split(",")
    assert [s.tool for s in args.specs] == ["regsuite"] * 4 + ["greedy"]
    with pytest.raises(SystemExit):
        run.parse_args(["--tools", "regsuite@brain-mri:0.3", "--data", str(tmp_path)])
    with pytest.raises(SystemExit):
        run.parse_args(["--tools", "greedy", "--no-mask", "regsuite@brain-mri", "--data", str(tmp_path)])

    case = suites.lung_cases(tmp_path)[0]
    commands = {s.name: run.child_command(s, case, tmp_path, 2, preset=args.regsuite_preset) for s in args.specs}
    assert commands["regsuite"][-2:] == ["--preset", "lung-ct"]              # --regsuite-preset: plain regsuite only
    assert commands["regsuite@brain-mri"][-2:] == ["--preset", "brain-mri"]
    assert commands["regsuite@brain-mri-hypermorph:0.3"][-4:] == ["--preset", "brain-mri-hypermorph", "--lambda", "0.3"]
    assert "--preset" not in commands["greedy"]
    assert all(c[c.index("--tool") + 1] == "regsuite" for name, c in commands.items() if name != "greedy")
    assert run.child_command("regsuite@brain-mri-fast", case, tmp_path, 2) == commands["regsuite@brain-mri-fast"]

    from benchmarks import _worker
    with pytest.raises(SystemExit):
        _worker.main(["--tool", "greedy", "--suite", "brain", "--fixed", "f", "--moving", "m",
                      "--out-dir", str(tmp_path / "w"), "--lambda", "0.3"])
    assert not (tmp_path / "w").exists()


def test_preset_tools_get_their_own_folders_rows_and_plots(tmp_path, monkeypatch, capsys):
    """Without registering: each regsuite@PRESET tool runs in its own folder and has its own
    labelled records, table rows and plot entries."""
    from benchmarks import run

    data = tmp_path / "data"
    data.mkdir()
    tools = "regsuite,regsuite@brain-mri-fast,regsuite@brain-mri-hypermorph:0.25,greedy"
    base = ["--suite", "brain", "--brain-pairs", "validation", "--tools", tools, "--data", str(data),
            "--out", str(tmp_path / "out")]
    assert run.main(base + ["--dry-run"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 12
    assert any(line.endswith("--preset brain-mri-hypermorph --lambda 0.25") and
               "runs/brain/10-8/regsuite@brain-mri-hypermorph_lambda0.25 " in line for line in printed)

    folders = []

    def fake_child(spec, case, run_dir, *rest):
        folders.append(run_dir)
        dice = {"regsuite": 0.6, "regsuite@brain-mri-fast": 0.62, "greedy": 0.58}.get(spec.name, 0.55)
        return {"status": "ok", "tool": spec.tool, "suite": "brain", "transform_path": str(run_dir / "t.h5"),
                "seconds": 10.0, "peak_rss_mb": 100.0, "dice": dice}

    monkeypatch.setattr(run, "run_child", fake_child)
    monkeypatch.setattr(run, "score", lambda case, record, check: {"sd_log_jac": 0.3, "folding_percent": 0.0})
    monkeypatch.setattr(run.report, "machine_info", lambda repo: {"cpu": "test"})
    assert run.main(base) == 0
    assert len(folders) == len(set(folders)) == 12
    records = json.loads((tmp_path / "out" / "results.json").read_text())["runs"]
    assert [r["tool"] for r in records[:4]] == tools.split(",")
    assert {r["pair"] for r in records} == {"8-9", "9-10", "10-8"}
    hyper = [r for r in records if r["tool"] == "regsuite@brain-mri-hypermorph:0.25"]
    assert len(hyper) == 3 and all(r["lambda"] == 0.25 and r["base_tool"] == "regsuite" for r in hyper)
    table = (tmp_path / "out" / "results.md").read_text()
    assert "## brain (3 pairs: 10-8, 8-9, 9-10)" in table
    assert "| regsuite@brain-mri-fast | 3/3 | 0.620 ± 0.000 |" in table
    assert "| regsuite@brain-mri-hypermorph:0.25 | 3/3 | 0.550 ± 0.000 |" in table
    assert "| regsuite | 3/3 | 0.600 ± 0.000 |" in table
    assert (tmp_path / "out" / "brain_bars.png").is_file() and (tmp_path / "out" / "brain_dice_vs_time.png").is_file()


def test_validation_pair_set_is_the_learned_models_held_out_pairs(tmp_path):
    """--brain-pairs validation = 8-9, 9-10, 10-8 (fixed-moving), the validation_pairs the shipped
    networks were not trained on, whose subjects are not training subjects."""
    from benchmarks import run

    validation = [(8, 9), (9, 10), (10, 8)]
    assert suites.BRAIN_PAIR_SETS["validation"] == validation
    assert suites.parse_brain_pairs(" validation ") == validation
    assert [c.pair for c in suites.cases("brain", tmp_path, None, validation)] == ["8-9", "9-10", "10-8"]
    assert run.parse_args(["--brain-pairs", "validation", "--data", str(tmp_path)]).brain_pairs == validation
    with pytest.raises(ValueError, match="validation"):  # the set names are listed in the error
        suites.parse_brain_pairs("valid")
    for model in ("brain-t1-voxelmorph", "brain-t1-hypermorph"):
        train = REPO / "RegistrationSuite/regsuite/models" / model / "train.json"
        if not train.is_file():
            continue
        config = json.loads(train.read_text())
        config = config.get("data", config)
        assert [tuple(pair) for pair in config["validation_pairs"]] == validation
        assert not {s for pair in validation for s in pair} & set(config["subjects"])


def test_hypermorph_sweep_tables_and_plot_from_records(tmp_path):
    """The sweep's summary, markdown and plot from made-up pair results (no registration)."""
    from benchmarks import hypermorph_sweep as sweep

    assert sweep.parse_lambdas("0,0.1, 1") == [0.0, 0.1, 1.0]
    for bad in ("0,1.5", "a", ""):
        with pytest.raises(ValueError):
            sweep.parse_lambdas(bad)
    assert list(sweep.DEFAULT_LAMBDAS) == [0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0]

    def pair(name, offset):
        return {"pair": name, "register_seconds": 20.0, "session_seconds": 1.0, "preset_lambda": 0.5,
                "session_vs_engine_max_mm": 0.0,
                "rows": [{"lambda": lam, "dice": 0.7 - 0.1 * lam + offset, "sd_log_jac": 0.5 - 0.3 * lam,
                          "folding_percent": 0.0, "seconds": 0.5} for lam in (0.0, 0.5, 1.0)]}

    payload = {"preset": "brain-mri-hypermorph", "preset_lambda": 0.5, "threads": 2, "device": "cpu",
               "pairs": [pair("8-9", 0.0), pair("9-10", 0.02), {"pair": "10-8", "error": "RuntimeError: boom"}]}
    sweep.write(tmp_path, payload)
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert [row["lambda"] for row in saved["summary"]] == [0.0, 0.5, 1.0]
    assert saved["summary"][0]["dice_mean"] == pytest.approx(0.71) and saved["summary"][0]["pairs"] == 2
    text = (tmp_path / "sweep.md").read_text()
    assert "| 0.5 | 2 | 0.6600 ± 0.0141 | 0.350 ± 0.000 | 0.000 ± 0.000 | 0.50 ± 0.00 |" in text
    assert "| 1 | 0.6000 / 0.200 / 0.000 | 0.6200 / 0.200 / 0.000 |" in text
    assert "10-8 failed: RuntimeError: boom" in text
    assert (tmp_path / "sweep.png").stat().st_size > 1000


def test_learned_affine_misalignments_and_moved_images_are_what_they_say():
    """The robustness benchmark's misalignments stay within their bounds, and a moved image
    satisfies moved(y) = moving(Q(y)) on its enlarged grid (so Q^-1 o result is the target)."""
    from benchmarks import learned_affine

    draws = learned_affine.misalignments(50, 30.0, 40.0, seed=3)
    for rotation, shift in draws:
        assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-12) and np.linalg.det(rotation) > 0
        angle = np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1)))
        assert angle <= 30.0 + 1e-9 and np.linalg.norm(shift) <= 40.0 + 1e-9
    assert max(np.linalg.norm(s) for _, s in draws) > 30.0  # the range is used, not just its start
    moving, _ = _blob_pair(size=32)
    turn = np.radians(20.0)
    rotation = np.array([[np.cos(turn), -np.sin(turn), 0.0], [np.sin(turn), np.cos(turn), 0.0], [0.0, 0.0, 1.0]])
    q = learned_affine.rigid(rotation, np.array([5.0, -4.0, 3.0]), learned_affine.brain_center(moving))
    moved = learned_affine.moved_image(moving, q, margin=8)
    assert moved.GetSize() == tuple(n + 16 for n in moving.GetSize())
    # the blob's peak: where the moved image peaks, Q takes it to the moving image's peak
    peak = np.unravel_index(np.argmax(sitk.GetArrayFromImage(moving)), moving.GetSize()[::-1])[::-1]
    moved_peak = np.unravel_index(np.argmax(sitk.GetArrayFromImage(moved)), moved.GetSize()[::-1])[::-1]
    target = np.array(moving.TransformIndexToPhysicalPoint([int(v) for v in peak]))
    found = np.array(q.TransformPoint(moved.TransformIndexToPhysicalPoint([int(v) for v in moved_peak])))
    assert np.linalg.norm(found - target) <= 1.8  # within a voxel diagonal (1 mm voxels)
    assert np.linalg.norm(found - np.array(moved.TransformIndexToPhysicalPoint([int(v) for v in moved_peak]))) > 5.0


@pytest.mark.parametrize("module", ["learned_affine", "learned_options"])
def test_learned_benchmarks_refuse_bad_pairs_and_data_in_one_line(tmp_path, capsys, module):
    """Both go through ``suites.checked_brain_pairs``: exit status 2, one line naming the problem."""
    script = importlib.import_module(f"benchmarks.{module}")
    (tmp_path / "oasis_trt20").mkdir()
    for argv, needle in ((["--data", str(tmp_path / "none")], "does not exist"),
                         (["--data", str(tmp_path), "--pairs", "8-8"], "--pairs: brain pair '8-8'")):
        with pytest.raises(SystemExit) as exit_info:
            script.main(argv + ["--out", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and needle in err[-1], err
    assert not (tmp_path / "out").exists()
