"""regsuite.jobs: registrations in a background process (real engine, real child processes).

Each background job starts a Python that imports torch (2-4 s); the images are 24^3 Gaussian
blobs with a known shift and the presets run a few dozen iterations.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from regsuite.errors import InputError, PresetError, RegistrationCancelled
from regsuite.jobs import (BackgroundRegistration, EventReader, JobFiles, JobResult, RegistrationRequest,
                           default_python, run_in_process)
from regsuite.jobs.process import PACKAGE_ROOT

SHIFT = np.array([2.0, -1.5, 1.0])  # fixed world -> moving world
CENTER = np.array([12.0, 12.0, 12.0])
RIGID = {"name": "test-rigid", "initialization": "geometry",
         "stages": [{"model": "rigid", "learning_rate": 1.0, "levels": [[2, 1, 60], [1, 0, 40]]}]}
BSPLINE = {"name": "test-bspline", "initialization": "geometry",
           "stages": [{"model": "rigid", "learning_rate": 1.0, "levels": [[2, 1, 40]]},
                      {"model": "bspline", "metric": "lncc", "metric_options": {"radius": 2}, "learning_rate": 0.3,
                       "control_spacing": 8.0, "regularization": {"bending": 0.1}, "levels": [[2, 1, 15]]}]}
ENDLESS = {"name": "test-endless", "initialization": "geometry", "stages": [
    {"model": "rigid", "learning_rate": 0.01, "tolerance": 0.0, "levels": [[1, 0, 1000000]]}]}
# What may stay in a job folder after a cancel or a failure: no result file.
CONTROL_FILES = {"request.json", "progress.jsonl", "cancel.flag", "worker.log", "error.json"}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("job-images")
    sigma = [5.0, 6.0, 4.0]
    fixed = sitk.GaussianSource(sitk.sitkFloat32, [24] * 3, sigma, CENTER.tolist())
    moving = sitk.GaussianSource(sitk.sitkFloat32, [24] * 3, sigma, (CENTER + SHIFT).tolist())
    paths = str(folder / "fixed.nii.gz"), str(folder / "moving.nii.gz")
    sitk.WriteImage(fixed, paths[0])
    sitk.WriteImage(moving, paths[1])
    return paths


def _request(images: tuple[str, str], folder: Path | str = "", preset: object = RIGID, **extra) -> RegistrationRequest:
    options = {"threads": 1, **extra}
    return RegistrationRequest(images[0], images[1], preset=preset, output_dir=str(folder), **options)


def _points() -> list[tuple[float, float, float]]:
    return [tuple(CENTER + offset) for offset in ([0, 0, 0], [4, -3, 2], [-5, 2, 3], [3, 5, -4])]


def _mapped(transform: sitk.Transform) -> np.ndarray:
    return np.array([transform.TransformPoint(p) for p in _points()])


def _gone(job: BackgroundRegistration) -> bool:
    """The worker has exited and been reaped, and (POSIX) nothing is left in its process group."""
    if job.returncode is None:
        return False
    if os.name == "posix":
        try:
            os.killpg(job.pid, 0)
        except ProcessLookupError:
            return True
        return False
    return True


def _left_files(folder: str) -> set[str]:
    return {path.name for path in Path(folder).iterdir()} - CONTROL_FILES


def _wait_for_progress(job: BackgroundRegistration, timeout: float = 120.0) -> list[dict]:
    """Poll until the first progress event (the worker is iterating). ``timeout`` only guards
    against a hang: the worker normally iterates after 2-4 s (importing torch)."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while not any(e["kind"] == "progress" for e in seen):
        assert job.is_running, job.error
        assert time.monotonic() < deadline, "no progress event"
        seen += job.poll()
        time.sleep(0.02)
    return seen


def test_background_job_recovers_shift_reports_progress_and_matches_in_process(images, tmp_path):
    job = BackgroundRegistration(_request(images, tmp_path / "job")).start()
    assert job.state == "running"
    batches: list[list[dict]] = []
    while job.is_running:
        events = job.poll()
        if events:
            batches.append(events)
        time.sleep(0.05)
    batches.append(job.poll())
    assert job.state == "completed", job.error
    assert job.error is None and job.error_type is None and job.returncode == 0 and _gone(job)

    events = [e for batch in batches for e in batch]
    progress = [e for e in events if e["kind"] == "progress"]
    assert sum(any(e["kind"] == "progress" for e in batch) for batch in batches) >= 2  # arrived while running
    assert set(progress[0]) == {"kind", "stage", "stages", "stage_name", "level", "levels", "iteration",
                                "iterations", "metric", "elapsed"}
    for level in {e["level"] for e in progress}:
        iterations = [e["iteration"] for e in progress if e["level"] == level]
        assert iterations == sorted(iterations) and len(set(iterations)) == len(iterations) > 1
    assert [e["level"] for e in progress] == sorted(e["level"] for e in progress)
    assert any(e["kind"] == "log" and e["message"] == "done" for e in events)

    result = job.result
    assert isinstance(result, JobResult) and result.part_kinds == ["linear"]
    assert Path(result.part_paths[0]).name == "part-1-linear.tfm" and Path(result.transform_path).name == "transform.h5"
    transform = sitk.ReadTransform(result.transform_path)  # plain SimpleITK reads every file
    np.testing.assert_allclose(_mapped(transform), np.array(_points()) + SHIFT, atol=0.2)
    np.testing.assert_allclose(_mapped(sitk.ReadTransform(result.part_paths[0])), _mapped(transform), atol=1e-6)
    np.testing.assert_allclose(_mapped(job.result.load_parts()[0]), _mapped(result.load_transform()), atol=1e-6)
    inverse = sitk.ReadTransform(result.inverse_path)
    np.testing.assert_allclose([inverse.TransformPoint(p) for p in _mapped(transform)], _points(), atol=1e-4)
    assert result.history and result.metrics["stages"][0]["model"] == "rigid" and result.elapsed > 0
    assert json.loads(Path(job.output_dir, "result.json").read_text())["part_kinds"] == ["linear"]

    # The same request in this process (same seed, same threads) gives the same transform.
    seen: list[dict] = []
    local = run_in_process(_request(images, tmp_path / "local"), progress=seen.append)
    np.testing.assert_allclose(_mapped(local.load_transform()), _mapped(transform), atol=1e-5)
    assert [e["iteration"] for e in seen if e["kind"] == "progress"] == [e["iteration"] for e in progress]
    assert sorted(os.listdir(tmp_path / "local")) == sorted(
        ["inverse.h5", "part-1-linear.tfm", "result.json", "transform.h5"])
    # a caller that never uses the inverse (the Slicer Logic) does not pay for it
    request = _request(images, tmp_path / "no-inverse")
    request.write_inverse = False
    lean = run_in_process(request)
    assert lean.inverse_path is None and lean.load_inverse() is None
    assert sorted(os.listdir(tmp_path / "no-inverse")) == sorted(["part-1-linear.tfm", "result.json", "transform.h5"])


def test_deformable_parts_are_written_separately_and_match_in_process(images, tmp_path):
    job = BackgroundRegistration(_request(images, tmp_path / "job", BSPLINE))
    assert job.start().wait(timeout=120) == "completed", job.error
    result = job.result
    assert result.part_kinds == ["linear", "bspline"] and result.inverse_path is None
    assert [Path(p).name for p in result.part_paths] == ["part-1-linear.tfm", "part-2-bspline.h5"]
    parts = result.load_parts()
    assert parts[1].GetName() == "BSplineTransform"
    whole = result.load_transform()
    np.testing.assert_allclose(_mapped(sitk.CompositeTransform(parts)), _mapped(whole), atol=1e-6)
    np.testing.assert_allclose(_mapped(whole), np.array(_points()) + SHIFT, atol=0.5)
    local = run_in_process(_request(images, tmp_path / "local", BSPLINE))
    np.testing.assert_allclose(_mapped(local.load_transform()), _mapped(whole), atol=1e-5)


def test_field_result_files_share_one_compact_field(images, tmp_path):
    """A svf result: part-2-field.h5 and transform.h5 hold the same compact field (copied once written)."""
    import h5py  # a dependency of the package
    svf = {"name": "test-svf", "initialization": "geometry",
           "stages": [{"model": "rigid", "learning_rate": 1.0, "levels": [[2, 1, 30]]},
                      {"model": "svf", "metric": "mse", "optimizer": "gaussian", "learning_rate": 0.5,
                       "levels": [[2, 1, 5]]}]}
    result = run_in_process(_request(images, tmp_path / "job", svf))
    assert result.part_kinds == ["linear", "field"]
    with h5py.File(result.part_paths[1], "r") as part, h5py.File(result.transform_path, "r") as whole:
        stored = part["TransformGroup/0/TransformParameters"]
        assert stored.dtype == np.float32 and stored.compression == "gzip"
        assert np.array_equal(whole["TransformGroup/2/TransformParameters"][()], stored[()])
    np.testing.assert_allclose(_mapped(sitk.CompositeTransform(result.load_parts())), _mapped(result.load_transform()),
                               atol=1e-9)


@pytest.mark.skipif(os.name != "posix", reason="the worker is paused with SIGSTOP")
def test_cancel_while_iterating_stops_within_an_iteration_and_leaves_no_result(images, tmp_path):
    job = BackgroundRegistration(_request(images, tmp_path / "job", ENDLESS)).start()
    seen = _wait_for_progress(job)
    # Pause the worker, read everything it has written, raise the flag, let it go on: whatever
    # it reports after that comes after the flag, however slow this machine is.
    os.kill(job.pid, signal.SIGSTOP)
    try:
        seen += job.poll()
        Path(job.output_dir, "cancel.flag").touch()
    finally:
        os.kill(job.pid, signal.SIGCONT)
    job.cancel(grace=120.0)  # the grace only guards against a hang: the worker stops by itself
    after_flag = [e for e in job.poll() if e["kind"] == "progress"]
    # The engine reports an iteration, then checks the flag: at most the iteration under way is
    # reported (0 when the pause fell between its report and the check).
    assert len(after_flag) <= 1, after_flag
    # It exited by itself with the cancelled status (1), not terminated (143) or killed (-9).
    assert job.returncode == RegistrationCancelled.exit_code
    assert job.state == "cancelled" and job.result is None and _gone(job)
    assert job.error_type == "RegistrationCancelled" and job.error == "registration cancelled by the user"
    assert json.loads(Path(job.output_dir, "error.json").read_text())["type"] == "RegistrationCancelled"
    assert _left_files(job.output_dir) == set() and JobFiles(job.output_dir).outputs() == []
    job.poll()
    assert job.state == "cancelled"
    job.cancel()  # a second cancel is harmless


@pytest.mark.skipif(os.name != "posix", reason="the worker is paused with SIGSTOP")
def test_cancel_kills_a_worker_that_does_not_look_at_the_flag(images, tmp_path):
    job = BackgroundRegistration(_request(images, tmp_path / "job", ENDLESS)).start()
    # Paused while starting up, the worker cannot look at the flag (as when stuck in an import):
    # after the grace, cancel terminates it (a paused process keeps SIGTERM pending), then kills it.
    os.kill(job.pid, signal.SIGSTOP)
    job.cancel(grace=0.2)
    assert job.returncode == -signal.SIGKILL
    assert job.state == "cancelled" and _gone(job) and _left_files(job.output_dir) == set()
    pending = BackgroundRegistration(_request(images))
    pending.cancel()
    assert pending.state == "cancelled" and pending.pid is None


@pytest.mark.skipif(os.name != "posix", reason="the worker watches its parent on POSIX only")
def test_worker_stops_by_itself_when_its_parent_dies(images, tmp_path):
    folder = tmp_path / "job"
    script = (
        "import sys, time\n"
        "from regsuite.jobs import BackgroundRegistration, RegistrationRequest\n"
        f"job = BackgroundRegistration(RegistrationRequest(*{list(images)!r}, preset={ENDLESS!r}, "
        f"output_dir={str(folder)!r}, threads=1)).start()\n"
        "while not any(e['kind'] == 'progress' for e in job.poll()): time.sleep(0.02)\n"
        "print('iterating', flush=True)\n"
        "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=PACKAGE_ROOT))
    try:
        assert parent.stdout.readline().strip() == "iterating"
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 120  # only a guard against a hang: the worker checks every iteration
    while not (folder / "error.json").is_file():
        assert time.monotonic() < deadline, "the orphaned worker kept running"
        time.sleep(0.05)
    assert json.loads((folder / "error.json").read_text())["type"] == "RegistrationCancelled"
    assert _left_files(str(folder)) == set()


@pytest.mark.parametrize("change,expected,error_type", [
    ({"fixed": "/nonexistent/fixed.nii.gz"}, "fixed image '/nonexistent/fixed.nii.gz' does not exist", "InputError"),
    ({"preset": "no-such-preset"}, "unknown preset 'no-such-preset'; available presets: ", "PresetError"),
    ({"preset": {"stages": [{"model": "warp"}]}}, "preset: stages[0]: unknown model 'warp'", "PresetError"),
])
def test_bad_request_fails_with_the_engine_message(images, tmp_path, change, expected, error_type):
    request = _request(images, tmp_path / "job")
    for key, value in change.items():
        setattr(request, key, value)
    job = BackgroundRegistration(request).start()
    assert job.wait(timeout=60) == "failed"
    assert job.error.startswith(expected) and "\n" not in job.error and "Traceback" not in job.error
    assert job.error_type == error_type and job.result is None
    assert _left_files(job.output_dir) == set()
    assert json.loads(Path(job.output_dir, "error.json").read_text())["exit_code"] == 2


def test_bad_threads_is_a_one_line_input_error(images, tmp_path):
    job = BackgroundRegistration(_request(images, tmp_path / "job", threads="two")).start()
    assert job.wait(timeout=60) == "failed" and job.error_type == "InputError"
    assert job.error == "threads must be an integer from 1 to 1024, got 'two'"


@pytest.mark.skipif(os.name != "posix", reason="a shell script stands in for the interpreter")
def test_unexpected_worker_exception_is_one_line_pointing_to_the_log(images, tmp_path):
    # the real worker with a stand-in bug (a KeyError where the job runs): every input the
    # engine sees is validated, so no request reaches an unexpected exception any more
    fake = tmp_path / "buggy-python"
    bug = "import sys, regsuite.jobs.worker as w; w._Job.run = lambda self: {}['bug']; sys.exit(w.main(sys.argv[-1:]))"
    fake.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "{bug}" "$@"\n')
    fake.chmod(0o755)
    job = BackgroundRegistration(_request(images, tmp_path / "job"), python=str(fake)).start()
    assert job.wait(timeout=60) == "failed" and job.error_type == "RegistrationFailed"
    assert job.error.startswith("unexpected KeyError in the registration worker: ") and "\n" not in job.error
    assert job.error.endswith(f"(traceback in {job.log_path})")
    assert "Traceback (most recent call last)" in Path(job.log_path).read_text()


@pytest.mark.skipif(os.name != "posix", reason="a shell script stands in for the interpreter")
def test_worker_dying_without_error_file_reports_its_log(images, tmp_path):
    fake = tmp_path / "fake-python"
    fake.write_text("#!/bin/sh\necho starting\necho 'Segmentation fault (core dumped)' >&2\nexit 139\n")
    fake.chmod(0o755)
    job = BackgroundRegistration(_request(images, tmp_path / "job"), python=str(fake)).start()
    assert job.wait(timeout=30) == "failed"
    assert "exited with status 139 without reporting an error" in job.error and job.error_type == "RegistrationFailed"
    assert job.error.endswith("starting | Segmentation fault (core dumped)") and "\n" not in job.error

    missing = BackgroundRegistration(_request(images, tmp_path / "job2"), python=str(tmp_path / "no-python")).start()
    assert missing.state == "failed" and missing.error.startswith("the registration worker cannot be started")


def test_run_in_process_raises_engine_errors_and_honours_cancel(images, tmp_path):
    with pytest.raises(PresetError, match="unknown preset 'nope'"):
        run_in_process(_request(images, tmp_path / "a", "nope"))
    with pytest.raises(InputError, match="moving image '.*missing.nii' does not exist"):
        run_in_process(RegistrationRequest(images[0], str(tmp_path / "missing.nii"), RIGID, str(tmp_path / "b")))
    calls: list[int] = []
    with pytest.raises(RegistrationCancelled):
        run_in_process(_request(images, tmp_path / "c"), cancel=lambda: calls.append(1) or len(calls) > 5)
    assert os.listdir(tmp_path / "c") == []


def test_request_json_round_trip_and_resolved_paths(tmp_path, monkeypatch):
    from regsuite.engine.config import load_preset

    monkeypatch.chdir(tmp_path)
    config = load_preset("rigid")
    request = RegistrationRequest("f.nii", "m.nii", preset=config, fixed_mask="mask.nii", seed=4)
    assert request.preset == config.to_dict()
    assert RegistrationRequest.from_json(request.to_json()) == request
    resolved = request.resolved(str(tmp_path / "job"))
    assert resolved.fixed == str(tmp_path / "f.nii") and resolved.fixed_mask == str(tmp_path / "mask.nii")
    assert resolved.moving_mask is None and resolved.output_dir == str(tmp_path / "job")
    assert RegistrationRequest("f", "m", preset="rigid").resolved("j").preset == "rigid"
    assert RegistrationRequest("f", "m", preset="mine.json").resolved("j").preset == str(tmp_path / "mine.json")
    with pytest.raises(InputError, match="registration request: unknown key\\(s\\) colour"):
        RegistrationRequest.from_json('{"fixed": "f", "moving": "m", "colour": 1}')
    with pytest.raises(InputError, match="missing key\\(s\\) moving"):
        RegistrationRequest.from_json('{"fixed": "f"}')


def test_event_reader_keeps_a_partial_last_line(tmp_path):
    path = tmp_path / "progress.jsonl"
    reader = EventReader(path)
    assert reader.read() == []
    with open(path, "wb") as stream:
        stream.write(b'{"kind": "log", "message": "one"}\n{"kind": "progress", "iter')
        stream.flush()
        assert [e["message"] for e in reader.read()] == ["one"]
        assert reader.read() == []
        stream.write(b'ation": 3}\nnot json\n')
    assert reader.read() == [{"kind": "progress", "iteration": 3}, {"kind": "log", "message": "not json"}]


def test_default_python_outside_and_inside_slicer(tmp_path, monkeypatch):
    assert default_python() == sys.executable
    home = tmp_path / "Slicer"
    (home / "bin").mkdir(parents=True)
    launcher = home / "bin" / ("PythonSlicer.exe" if os.name == "nt" else "PythonSlicer")
    launcher.write_text("")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "slicer", types.SimpleNamespace(app=types.SimpleNamespace(slicerHome=str(home))))
    assert default_python() == str(launcher)


def test_parent_imports_neither_torch_nor_slicer():
    code = ("import sys; from regsuite.jobs import BackgroundRegistration, RegistrationRequest, run_in_process; "
            "print(sorted(m for m in ('torch', 'slicer') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT)
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True).stdout.strip() == "[]"


def test_cleanup_removes_only_a_folder_the_job_created(images, tmp_path):
    job = BackgroundRegistration(_request(images, "", "no-such-preset")).start()
    assert job.wait(timeout=60) == "failed" and Path(job.output_dir).is_dir()
    job.cleanup()
    assert not Path(job.output_dir).exists()
    mine = BackgroundRegistration(_request(images, tmp_path / "mine", "no-such-preset")).start()
    mine.wait(timeout=60)
    mine.cleanup()
    assert (tmp_path / "mine" / "error.json").is_file()
