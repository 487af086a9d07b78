"""Multi-atlas segmentation and population templates, run through the task runner.

Phantoms: the head-like phantom of ``phantoms.py`` on small grids, moved by known translations.
The translations are whole voxels and the ``rigid`` preset recovers them to well under a voxel, so
the warped atlas labels match the target's labels (Dice > 0.98: a few boundary voxels at most); a
deliberately corrupted atlas is outvoted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from phantoms import make_grid, sample_phantom
from test_cli import assert_one_line_error, run

from regsuite.errors import InputError
from regsuite.evaluation.overlap import dice_per_label
from regsuite.population.atlases import Atlas, check_atlases, read_atlas_list
from regsuite.population.runner import SerialRunner, TasksFailed, make_runner
from regsuite.population.segment import segment
from regsuite.population.tasks import Task

GRID = make_grid((28, 28, 28), (2.5, 2.5, 2.5))


def phantom_case(folder: Path, name: str, shift: tuple[float, float, float], corrupt: bool = False) -> Atlas:
    """The phantom moved by ``shift`` mm, with a 3-label map thresholded from it."""
    image = sample_phantom(GRID, lambda p: p - np.array(shift))
    image = image * sitk.Cast(image > 0.05, sitk.sitkFloat32)
    labels = sitk.Cast(image > 0.1, sitk.sitkUInt8) + sitk.Cast(image > 0.45, sitk.sitkUInt8)
    if corrupt:  # a wrong label over a third of the grid
        array = sitk.GetArrayFromImage(labels)
        array[:, :, :9][array[:, :, :9] > 0] = 3
        corrupted = sitk.GetImageFromArray(array)
        corrupted.CopyInformation(labels)
        labels = corrupted
    sitk.WriteImage(image, str(folder / f"{name}.nii.gz"))
    sitk.WriteImage(labels, str(folder / f"{name}_labels.nii.gz"))
    return Atlas(str(folder / f"{name}.nii.gz"), str(folder / f"{name}_labels.nii.gz"), name)


@pytest.fixture()
def cases(tmp_path: Path) -> dict:
    target = phantom_case(tmp_path, "target", (0.0, 0.0, 0.0))
    # whole-voxel shifts: a recovered shift maps every atlas voxel centre onto a target voxel centre
    atlases = [phantom_case(tmp_path, "a1", (2.5, -2.5, 0.0)), phantom_case(tmp_path, "a2", (-2.5, 5.0, 0.0)),
               phantom_case(tmp_path, "a3", (0.0, 2.5, -2.5), corrupt=True)]
    return {"target": target, "atlases": atlases, "folder": tmp_path}


def mean_dice(reference: str, labels: str) -> float:
    return float(np.mean(list(dice_per_label(sitk.ReadImage(reference), sitk.ReadImage(labels)).values())))


# ---------------------------------------------------------------------------- runner
def _tasks(folder: Path, count: int = 3) -> list[Task]:
    return [Task(f"t{i}", "regsuite.population.tasks:example_step",
                 {"text": "x" * (i + 1), "output": str(folder / f"{i}.txt")},
                 (str(folder / f"{i}.txt"),), str(folder / "stamps" / f"t{i}.json")) for i in range(count)]


def flaky_step(marker: str, output: str) -> dict:
    """Fails the first time (creating ``marker``), succeeds the second: a transient failure."""
    if not os.path.exists(marker):
        Path(marker).write_text("failed once")
        raise RuntimeError("transient failure")
    Path(output).write_text("ok")
    return {"ok": True}


def dying_step(marker: str, output: str) -> dict:
    """Kills its own process the first time: a worker that dies mid-task."""
    if not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)
    Path(output).write_text(str(os.getpid()))
    return {"pid": os.getpid()}


def test_serial_runner_skips_finished_tasks_and_reruns_changed_ones(tmp_path):
    tasks = _tasks(tmp_path)
    with SerialRunner() as runner:
        assert [o.status for o in runner.run(tasks)] == ["done"] * 3
        assert [o.status for o in runner.run(tasks)] == ["skipped"] * 3
        assert runner.run(tasks)[1].result == {"characters": 2}  # recorded in the stamp
        changed = Task("t1", tasks[1].function, {**tasks[1].kwargs, "text": "changed"}, tasks[1].outputs, tasks[1].stamp)
        assert [o.status for o in runner.run([tasks[0], changed])] == ["skipped", "done"]
        assert (tmp_path / "1.txt").read_text() == "changed"
        os.remove(tasks[2].outputs[0])  # an output gone: the task is not finished
        assert [o.status for o in runner.run(tasks)] == ["skipped", "done", "done"]  # t1's arguments changed back
    assert (tmp_path / "1.txt").read_text() == "xx"


def test_failed_task_is_retried_then_reported_while_others_finish(tmp_path):
    flaky = Task("flaky", "test_population_workflows:flaky_step",
                 {"marker": str(tmp_path / "marker"), "output": str(tmp_path / "flaky.txt")},
                 (str(tmp_path / "flaky.txt"),), str(tmp_path / "flaky.json"))
    broken = Task("broken", "regsuite.population.tasks:example_step",
                  {"text": "x", "output": str(tmp_path / "missing" / "x.txt")}, (str(tmp_path / "missing" / "x.txt"),),
                  str(tmp_path / "broken.json"))
    tasks = [flaky, broken] + _tasks(tmp_path, 2)
    with SerialRunner() as runner, pytest.raises(TasksFailed) as failure:
        runner.run(tasks)
    assert [o.status for o in failure.value.outcomes] == ["done", "failed", "done", "done"]
    assert "1 of 4 tasks failed (broken: output" in str(failure.value) and "does not exist" in str(failure.value)
    assert "\n" not in str(failure.value)
    assert (tmp_path / "flaky.txt").read_text() == "ok"


def test_runner_options_are_checked():
    with pytest.raises(InputError, match="--workers must be a whole number of at least 1, got 0"):
        make_runner(workers=0)
    with pytest.raises(InputError, match="cannot be combined with --scheduler"):
        make_runner(workers=2, scheduler="tcp://127.0.0.1:1")


# ---------------------------------------------------------------------------- atlases
def test_atlas_checks_name_the_problem(cases, tmp_path):
    atlases = cases["atlases"]
    assert check_atlases(atlases[:2]) == {0, 1, 2}
    other_grid = sitk.Image([20, 20, 20], sitk.sitkUInt8)
    sitk.WriteImage(other_grid, str(tmp_path / "small_labels.nii.gz"))
    with pytest.raises(InputError, match=r"atlas 'bad': labels '.*small_labels.nii.gz' are not on the grid of its image"):
        check_atlases([Atlas(atlases[0].image, str(tmp_path / "small_labels.nii.gz"), "bad")])
    with pytest.raises(InputError, match=r"atlas 'a1' lacks label\(s\) 3 \(label 3 is in a3\)"):
        check_atlases([atlases[0], atlases[2]])
    assert check_atlases([atlases[0], atlases[2]], allow_missing_labels=True) == {0, 1, 2, 3}
    (tmp_path / "list.csv").write_text("image,labels,name\na1.nii.gz,a1_labels.nii.gz,first\n")
    assert read_atlas_list(str(tmp_path / "list.csv")) == [Atlas(atlases[0].image, atlases[0].labels, "first")]
    (tmp_path / "bad.csv").write_text("img,lab\nx,y\n")
    with pytest.raises(InputError, match="needs a header line with the columns image,labels"):
        read_atlas_list(str(tmp_path / "bad.csv"))


# ---------------------------------------------------------------------------- segment
def test_segment_outvotes_a_corrupted_atlas_and_resumes(cases, tmp_path):
    target, atlases = cases["target"], cases["atlases"]
    output, work = tmp_path / "out" / "labels.nii.gz", tmp_path / "work"
    output.parent.mkdir()
    seen = []
    summary = segment(target.image, atlases, str(output), fusion="majority", preset="rigid", work_dir=str(work),
                      probabilities=str(tmp_path / "out" / "probabilities"), allow_missing_labels=True,
                      progress=lambda done, total, outcome: seen.append(outcome.status))
    assert seen == ["done"] * 4  # three registrations and the fusion
    # each atlas alone: the corrupted one scores far lower; the fusion matches the target's labels
    single = {a.name: mean_dice(target.labels, str(work / "atlases" / a.name / "labels.nii.gz")) for a in atlases}
    assert single["a1"] > 0.98 and single["a2"] > 0.98 and single["a3"] < 0.9, single
    fused = sitk.ReadImage(str(output))
    assert fused.GetPixelID() == sitk.sitkUInt8 and fused.GetSize() == GRID.GetSize()
    # majority: wherever a1 and a2 agree their label wins (a3 alone cannot outvote them)
    a1, a2 = (sitk.GetArrayFromImage(sitk.ReadImage(str(work / "atlases" / n / "labels.nii.gz"))) for n in ("a1", "a2"))
    agree = a1 == a2
    assert np.array_equal(sitk.GetArrayFromImage(fused)[agree], a1[agree])
    assert mean_dice(target.labels, str(output)) > 0.98
    probabilities = sorted(os.listdir(tmp_path / "out" / "probabilities"))
    assert probabilities == ["label_0.nii.gz", "label_1.nii.gz", "label_2.nii.gz", "label_3.nii.gz"]
    total = sum(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "probabilities" / p))) for p in probabilities)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)  # vote fractions of 3 atlases sum to one
    assert set(summary["atlases"]) == {"a1", "a2", "a3"}

    # resume: the registrations are skipped, the fusion (another method) runs
    seen.clear()
    output.unlink()
    segment(target.image, atlases, str(output), fusion="weighted", preset="rigid", work_dir=str(work), resume=True,
            allow_missing_labels=True, progress=lambda done, total, outcome: seen.append(outcome.status))
    assert seen == ["skipped"] * 3 + ["done"] and mean_dice(target.labels, str(output)) > 0.98
    # the same folder for another run is refused, without --resume or with other inputs
    with pytest.raises(InputError, match="holds an earlier run; pass --resume"):
        segment(target.image, atlases, str(tmp_path / "o2.nii.gz"), preset="rigid", work_dir=str(work),
                allow_missing_labels=True)
    with pytest.raises(InputError, match=r"belongs to another run \(atlases differ\)"):
        segment(target.image, atlases[:2], str(tmp_path / "o2.nii.gz"), preset="rigid", work_dir=str(work),
                resume=True)
    assert not (tmp_path / "o2.nii.gz").exists()


def test_segment_select_keeps_the_most_similar_atlases(cases, tmp_path):
    target, atlases = cases["target"], cases["atlases"]
    stranger = tmp_path / "stranger.nii.gz"  # an atlas image unlike the target (noise), with valid labels
    noise = sitk.GetImageFromArray(np.random.default_rng(0).random(GRID.GetSize()[::-1]).astype(np.float32))
    noise.CopyInformation(GRID)
    sitk.WriteImage(noise, str(stranger))
    choice = atlases[:2] + [Atlas(str(stranger), atlases[0].labels, "stranger")]
    summary = segment(target.image, choice, str(tmp_path / "l.nii.gz"), preset="rigid", select=2)
    assert set(summary["atlases"]) == {"a1", "a2"}
    assert min(summary["selection"]["a1"], summary["selection"]["a2"]) > summary["selection"]["stranger"]


def test_segment_bad_input_writes_nothing(cases, tmp_path, capsys):
    target, atlases = cases["target"], cases["atlases"]
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    out = str(tmp_path / "result.nii.gz")
    code, _, err = run(capsys, "segment", "--target", target.image, "--output", out, "--preset", "rigid")
    assert_one_line_error(code, err, 2, "no atlas given")
    code, _, err = run(capsys, "segment", "--target", target.image, "--output", out, "--preset", "rigid",
                       "--atlas", atlases[0].image, atlases[0].labels, "--atlas", atlases[2].image, atlases[2].labels)
    assert_one_line_error(code, err, 2, "different label sets", "lacks label(s) 3")
    code, _, err = run(capsys, "segment", "--target", target.image, "--output", atlases[0].labels, "--preset", "rigid",
                       "--atlas", atlases[0].image, atlases[0].labels)
    assert_one_line_error(code, err, 2, "would overwrite an input")
    code, _, err = run(capsys, "segment", "--target", target.image, "--output", out, "--preset", "rigid",
                       "--atlas", atlases[0].image, atlases[0].labels, "--select", "2")
    assert_one_line_error(code, err, 2, "--select 2 asks for more atlases than the 1 given")
    code, _, err = run(capsys, "segment", "--target", target.image, "--output", out, "--preset", "nonexistent",
                       "--atlas", atlases[0].image, atlases[0].labels)
    assert_one_line_error(code, err, 2, "nonexistent")
    code, _, err = run(capsys, "segment", "--target", target.image, "--output", out, "--preset", "rigid",
                       "--atlas", atlases[0].image, atlases[0].labels, "--resume")
    assert_one_line_error(code, err, 2, "--resume needs --work-dir")
    after = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert after == before  # no output, no temporary, inputs untouched


def test_segment_command_line(cases, tmp_path, capsys):
    target, atlases = cases["target"], cases["atlases"]
    (tmp_path / "atlases.csv").write_text("image,labels\n" + "".join(f"{Path(a.image).name},{Path(a.labels).name}\n"
                                                                    for a in atlases[:2]))
    out = tmp_path / "labels.nii.gz"
    code, stdout, err = run(capsys, "segment", "--target", target.image, "--atlas-list", str(tmp_path / "atlases.csv"),
                            "--output", str(out), "--preset", "rigid", "--fusion", "joint", "--patch-radius", "1")
    assert code == 0, err
    assert "[2/2] register-a2 done" in err and "[1/1] fuse-joint done" in err and f"wrote {out}" in stdout
    assert mean_dice(target.labels, str(out)) > 0.95


def test_scheduler_that_does_not_answer_fails_within_seconds(cases, tmp_path, capsys):
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    import socket
    import time

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.perf_counter()
    code, _, err = run(capsys, "segment", "--target", cases["target"].image, "--output", str(tmp_path / "l.nii.gz"),
                       "--atlas", cases["atlases"][0].image, cases["atlases"][0].labels, "--preset", "rigid",
                       "--scheduler", f"tcp://127.0.0.1:{port}")
    assert_one_line_error(code, err, 2, f"Dask scheduler 'tcp://127.0.0.1:{port}' did not answer within 10 s")
    assert time.perf_counter() - start < 60  # a connection timeout, not a hang
    assert not (tmp_path / "l.nii.gz").exists()


# ---------------------------------------------------------------------------- Dask
@pytest.fixture()
def dask_cluster(tmp_path):
    """A scheduler and two workers started as separate processes, as on a cluster."""
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    import shutil
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    logs = open(tmp_path / "cluster.log", "w")
    processes = [subprocess.Popen(dask + ["--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], env=env,
                                  stdout=logs, stderr=logs)]
    for _ in range(2):
        processes.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                           "--no-dashboard", "--local-directory", str(tmp_path / "dask")],
                                          env=env, stdout=logs, stderr=logs))
    try:
        from distributed import Client

        with Client(address, timeout="60s", set_as_default=False) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        logs.close()
        shutil.rmtree(tmp_path / "dask", ignore_errors=True)


def test_scheduler_with_two_worker_processes_runs_segment_and_survives_a_dying_worker(dask_cluster, cases, tmp_path,
                                                                                    capsys):
    # a task whose worker dies mid-task is run again elsewhere; the others are unaffected
    dying = Task("dying", "test_population_workflows:dying_step",
                 {"marker": str(tmp_path / "died"), "output": str(tmp_path / "survived.txt")},
                 (str(tmp_path / "survived.txt"),), str(tmp_path / "dying.json"))
    with make_runner(scheduler=dask_cluster) as runner:
        outcomes = runner.run([dying] + _tasks(tmp_path, 3))
    assert [o.status for o in outcomes] == ["done"] * 4
    assert (tmp_path / "died").read_text() != (tmp_path / "survived.txt").read_text()  # another process finished it
    # the same command as on one machine, with --scheduler: the same labels as a serial run
    target, atlases = cases["target"], cases["atlases"]
    arguments = ["segment", "--target", target.image, "--preset", "rigid", "--quiet",
                 "--atlas", atlases[0].image, atlases[0].labels, "--atlas", atlases[1].image, atlases[1].labels]
    code, _, err = run(capsys, *arguments, "--output", str(tmp_path / "dask.nii.gz"), "--scheduler", dask_cluster)
    assert code == 0, err
    code, _, err = run(capsys, *arguments, "--output", str(tmp_path / "serial.nii.gz"), "--workers", "1")
    assert code == 0, err
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "dask.nii.gz"))),
                                  sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "serial.nii.gz"))))


# ---------------------------------------------------------------------------- template
QUICK_SVF = {"name": "quick-svf", "initialization": "moments", "stages": [
    {"model": "affine", "metric": "ncc", "optimizer": "adam", "learning_rate": 2.0,
     "levels": [{"shrink": 2, "smoothing": 1, "iterations": 30}]},
    {"model": "svf", "metric": "lncc", "metric_options": {"radius": 2}, "optimizer": "gaussian", "learning_rate": 1.0,
     "gradient_smoothing": 1.732, "field_smoothing": 0.707, "integration_steps": 5,
     "levels": [{"shrink": 2, "smoothing": 1, "iterations": 15}, {"shrink": 1, "smoothing": 0, "iterations": 5}]}]}


def _vector_image(value, reference: sitk.Image) -> sitk.Image:
    array = np.broadcast_to(np.asarray(value, np.float32), reference.GetSize()[::-1] + (3,)).copy()
    image = sitk.GetImageFromArray(array, isVector=True)
    image.CopyInformation(reference)
    return image


def test_shape_update_removes_the_mean_affine_and_velocity(tmp_path):
    """Known answer: translations t_i and constant velocities c_i give U(y) = y - mean(t) - mean(c)."""
    from regsuite.population.template import average_step, finalize_subject

    reference = sample_phantom(GRID)
    sitk.WriteImage(reference, str(tmp_path / "reference.nii.gz"))
    shifts = [(2.0, 0.0, -1.0), (-1.0, 3.0, 0.0), (2.0, 0.0, 4.0)]
    velocities = [(0.5, -0.3, 0.0), (0.1, 0.0, 0.6), (0.3, 0.6, 0.0)]
    warped, affines, fields = [], [], []
    for number, (shift, velocity) in enumerate(zip(shifts, velocities)):
        sitk.WriteImage(reference, str(tmp_path / f"w{number}.nii.gz"))
        sitk.WriteTransform(sitk.TranslationTransform(3, shift), str(tmp_path / f"a{number}.tfm"))
        sitk.WriteImage(_vector_image(velocity, reference), str(tmp_path / f"v{number}.nii.gz"))
        warped.append(str(tmp_path / f"w{number}.nii.gz"))
        affines.append(str(tmp_path / f"a{number}.tfm"))
        fields.append(str(tmp_path / f"v{number}.nii.gz"))
    record = average_step(str(tmp_path / "reference.nii.gz"), warped, affines, fields, str(tmp_path / "t.nii.gz"),
                          str(tmp_path / "update.json"), str(tmp_path / "shape_update"))
    mean_shift, mean_velocity = np.mean(shifts, axis=0), np.mean(velocities, axis=0)
    assert record["velocity_mean_mm"] == pytest.approx(np.linalg.norm(mean_velocity), abs=1e-5)
    assert record["affine_mean_mm"] == pytest.approx(np.linalg.norm(mean_shift), abs=1e-5)
    update = sitk.ReadTransform(str(tmp_path / "shape_update.h5"))
    for point in [(0.0, 0.0, 0.0), (10.0, -5.0, 7.5), (-12.0, 8.0, -3.0)]:
        # a constant velocity integrates exactly; 1e-3 mm covers float32 storage and the .h5 field's 2^-10 mm steps
        np.testing.assert_allclose(update.TransformPoint(point), np.array(point) - mean_shift - mean_velocity, atol=1e-3)
    # a subject's transforms to and from the final template are inverse to each other
    # a subject registered as A o exp(v) with a constant v: exp(v) is the constant displacement v
    subject = sitk.CompositeTransform([sitk.TranslationTransform(3, shifts[0]),
                                       sitk.DisplacementFieldTransform(sitk.Cast(_vector_image(velocities[0], reference),
                                                                                 sitk.sitkVectorFloat64))])
    sitk.WriteTransform(subject, str(tmp_path / "subject.h5"))
    sitk.WriteImage(_vector_image(velocities[0], reference), str(tmp_path / "subject_velocity.nii.gz"))
    finalize_subject(str(tmp_path / "t.nii.gz"), str(tmp_path / "subject.h5"), str(tmp_path / "subject_velocity.nii.gz"),
                     str(tmp_path / "shape_update"), str(tmp_path / "to.h5"), str(tmp_path / "from.h5"),
                     str(tmp_path / "logj.nii.gz"))
    to, back = sitk.ReadTransform(str(tmp_path / "to.h5")), sitk.ReadTransform(str(tmp_path / "from.h5"))
    for point in [(0.0, 0.0, 0.0), (10.0, -5.0, 7.5)]:
        np.testing.assert_allclose(back.TransformPoint(to.TransformPoint(point)), point, atol=1e-3)



def test_template_command_builds_checkpoints_and_resumes(cases, tmp_path, capsys):
    atlases = cases["atlases"][:2] + [cases["target"]]
    preset = tmp_path / "quick.json"
    preset.write_text(json.dumps(QUICK_SVF))
    (tmp_path / "images.csv").write_text("image,labels,name\n" + "".join(
        f"{Path(a.image).name},{Path(a.labels).name},{a.name}\n" for a in atlases))
    out = tmp_path / "template"
    arguments = ["template", "--image-list", str(tmp_path / "images.csv"), "--output-dir", str(out),
                 "--iterations", "2", "--preset", str(preset)]
    code, stdout, err = run(capsys, *arguments)
    assert code == 0, err
    assert "iteration 2: update" in stdout and "[1/1] 2-average done" in err
    log = json.loads((out / "log.json").read_text())
    assert [record["iteration"] for record in log] == [0, 1, 2]
    assert log[0]["velocity_mean_mm"] == 0.0 and log[1]["velocity_mean_mm"] > 0.0
    template = sitk.ReadImage(str(out / "template.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(template),
                                  sitk.GetArrayFromImage(sitk.ReadImage(str(out / "iterations" / "2" / "template.nii.gz"))))
    for name in ("a1", "a2", "target"):
        folder = out / "subjects" / name
        to, back = (sitk.ReadTransform(str(folder / f)) for f in ("to_template.h5", "from_template.h5"))
        for point in [(0.0, 0.0, 0.0), (8.0, -6.0, 4.0)]:  # inside the head: inverse within 0.05 mm
            np.testing.assert_allclose(back.TransformPoint(to.TransformPoint(point)), point, atol=0.05)
        assert sitk.ReadImage(str(folder / "log_jacobian.nii.gz")).GetSize() == template.GetSize()
    # the subjects' labels, brought to the template and fused, agree with each subject's own labels there
    fused = sitk.ReadImage(str(out / "labels.nii.gz"))
    assert mean_dice(str(out / "subjects" / "target" / "labels_in_template.nii.gz"), str(out / "labels.nii.gz")) > 0.9
    assert fused.GetSize() == template.GetSize()

    # a killed run continues without redoing finished work: remove the last average, resume
    os.remove(out / "iterations" / "2" / "template.nii.gz")
    code, _, err = run(capsys, *arguments, "--resume")
    assert code == 0, err
    assert "2-register-a1 skipped" in err and "2-average done" in err and "1-average skipped" in err
    assert "finalize-a1 done" in err  # the template changed: each subject's transforms follow it
    code, _, err = run(capsys, *arguments, "--resume")  # nothing changed: nothing runs again
    assert code == 0 and " done" not in err.replace("2-average skipped", "") and "finalize-a1 skipped" in err
    code, _, err = run(capsys, *arguments)  # the same folder without --resume is refused
    assert_one_line_error(code, err, 2, "holds an earlier run; pass --resume")
    code, _, err = run(capsys, "template", "--images", atlases[0].image, atlases[1].image, "--output-dir", str(out),
                       "--resume", "--preset", str(preset))
    assert_one_line_error(code, err, 2, "belongs to another run")


def test_template_bad_input(cases, tmp_path, capsys):
    image = cases["target"].image
    for arguments, needles in [
        (["--images", image], ["a template needs at least 2 images, got 1"]),
        (["--images", image, cases["atlases"][0].image, "--preset", "affine"], ["must end in an 'svf' stage"]),
        (["--images", image, str(tmp_path / "missing.nii.gz")], ["missing.nii.gz", "does not exist"]),
        (["--images", image, cases["atlases"][0].image, "--iterations", "-1"], ["--iterations must be"]),
    ]:
        code, _, err = run(capsys, "template", *arguments, "--output-dir", str(tmp_path / "t"))
        assert_one_line_error(code, err, 2, *needles)
        assert not (tmp_path / "t").exists()  # nothing created before the inputs are checked


def test_a_task_whose_input_file_changed_runs_again(tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("one")
    task = Task("copy", "test_population_workflows:copy_step", {"source": str(source), "output": str(tmp_path / "o.txt")},
                (str(tmp_path / "o.txt"),), str(tmp_path / "copy.json"))
    with SerialRunner() as runner:
        assert runner.run([task])[0].status == "done"
        assert runner.run([task])[0].status == "skipped"
        source.write_text("two, longer")  # rewritten: another size (and time)
        assert runner.run([task])[0].status == "done"
    assert (tmp_path / "o.txt").read_text() == "two, longer"


def copy_step(source: str, output: str) -> dict:
    """Copy ``source`` to ``output``: a task with an input file."""
    Path(output).write_text(Path(source).read_text())
    return {}


def test_without_dask_workers_run_in_this_process_with_a_warning(tmp_path, monkeypatch, capsys):
    from regsuite.population import runner as runner_module

    monkeypatch.setattr(runner_module, "dask_available", lambda: False)
    with make_runner(workers=2) as runner:
        assert isinstance(runner, SerialRunner)
        assert [o.status for o in runner.run(_tasks(tmp_path))] == ["done"] * 3
    assert "dask is not installed; running the tasks one after another in this process" in capsys.readouterr().err
    assert (tmp_path / "2.txt").read_text() == "xxx"
