"""Every model of the onnx wheel's backend test data (onnx/backend/test/data/: light,
pytorch-converted, pytorch-operator, simple; real/ only points at light/) through the
engine: it matches its reference output, or it is refused cleanly — ModelError (or
UnsupportedOperatorError) at load, or a ValueError about the input `x` at run. Never a wrong
answer, another exception, or a crash.

The cases run in worker processes (tests/backend_worker.py), a batch per process, so a
crash in native code (a numba kernel fed an unchecked shape) kills a worker, not the test
session. A batch whose worker dies or hangs is run again one case per process, so the case
that crashed fails by name and the others still get their verdicts.

The cases the engine's kernels cover (dense 2-d convs of any kernel, stride, padding and
dilation; depthwise 3x3; a Flatten; a 2-d MaxPool; a stand-alone ReLU or Sigmoid) must
match, not merely be refused."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend_worker import DATA, all_cases

pytestmark = pytest.mark.lanes     # layouts, packing, plans and bytes depend on the lane width

ROOT = Path(__file__).resolve().parent.parent
CASES = all_cases()
PASSING = {"matched", "refused_at_load", "refused_at_run"}
MUST_MATCH = {f"pytorch-converted/{name}" for name in (
    "test_Conv2d", "test_Conv2d_depthwise", "test_Conv2d_depthwise_padded", "test_Conv2d_depthwise_strided",
    "test_Conv2d_dilated", "test_Conv2d_no_bias", "test_Conv2d_padding", "test_Conv2d_strided",
    "test_MaxPool2d", "test_ReLU", "test_Sigmoid")} | {
    "pytorch-operator/test_operator_conv", "pytorch-operator/test_operator_flatten"}
BATCHES = 3                   # worker processes for the whole data (each imports numba once)
BATCH_SECONDS = 600           # a batch's limit: a cold numba cache compiles every kernel first
CASE_SECONDS = 300            # one case alone, when its batch is run again


def run_cases(cases: list[str], timeout: float, env: dict | None = None) -> tuple[dict[str, dict], str]:
    """Verdicts of one worker process over `cases` (those it reached), and how it ended."""
    try:
        result = subprocess.run([sys.executable, "-m", "tests.backend_worker", *cases], cwd=ROOT,
                                env=env or os.environ.copy(), capture_output=True, text=True, timeout=timeout)
        stdout, ended = result.stdout, f"exit code {result.returncode}; stderr: {result.stderr[-1500:]}"
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        ended = f"no verdict within {timeout:g} s (killed)"
    verdicts = {}
    for line in stdout.splitlines():
        message = json.loads(line)
        if "verdict" in message:
            verdicts[message["case"]] = message
    return verdicts, ended


def run_all(cases: list[str], batches: int, env: dict | None = None) -> dict[str, dict]:
    """Every case's verdict: batches of cases per worker; the cases of a batch whose worker
    died or hung before reaching them run again one per worker, and a case that kills its
    own worker gets the verdict "died" with how the worker ended."""
    verdicts: dict[str, dict] = {}
    size = -(-len(cases) // batches)
    for start in range(0, len(cases), size):
        batch = cases[start:start + size]
        got, _ = run_cases(batch, BATCH_SECONDS, env)
        verdicts.update(got)
        for case in (c for c in batch if c not in got):
            alone, ended = run_cases([case], CASE_SECONDS, env)
            verdicts[case] = alone.get(case, {"case": case, "verdict": "died", "detail": f"the worker died: {ended}"})
    return verdicts


@pytest.fixture(scope="module")
def verdicts() -> dict[str, dict]:
    return run_all(CASES, BATCHES)


def test_the_backend_data_is_all_there():
    folders = {case.split("/")[0] for case in CASES}
    assert folders == {"light", "pytorch-converted", "pytorch-operator", "simple"}
    assert len(CASES) >= 140 and MUST_MATCH <= set(CASES)


def test_real_models_are_the_light_ones():
    # real/ holds no model, only data.json naming one in light/: those run as light/ cases
    pointers = sorted((DATA / "real").glob("*/data.json"))
    assert pointers
    for pointer in pointers:
        url = json.loads(pointer.read_text())["url"]
        assert url.startswith("onnx/backend/test/data/light/"), url
        assert f"light/{Path(url).stem}" in CASES


@pytest.mark.parametrize("case", CASES)
def test_backend_model_matches_or_is_refused_cleanly(verdicts, case):
    verdict = verdicts[case]
    assert verdict["verdict"] in PASSING, f"{case}: {verdict['verdict']}: {verdict['detail']}"
    if case in MUST_MATCH:
        assert verdict["verdict"] == "matched", f"{case} should run and match, but: {verdict['detail']}"
    if verdict["verdict"] == "refused_at_load":
        assert verdict["detail"].startswith(("ModelError: ", "UnsupportedOperatorError: ")) and \
            len(verdict["detail"]) > 40, verdict["detail"]


def test_a_crashing_case_fails_by_name_and_the_rest_of_its_batch_still_runs():
    # the worker aborts (SIGABRT: as a segfault in a kernel would kill it) when it starts this case
    crasher = "pytorch-operator/test_operator_flatten"
    env = {**os.environ, "ROOFLINE_BACKEND_WORKER_ABORT": crasher}
    cases = ["pytorch-converted/test_Conv2d", crasher, "pytorch-operator/test_operator_conv", "simple/test_shrink"]
    got = run_all(cases, batches=1, env=env)
    assert got[crasher]["verdict"] == "died" and "exit code" in got[crasher]["detail"]
    assert {case: got[case]["verdict"] for case in cases if case != crasher} == {
        "pytorch-converted/test_Conv2d": "matched", "pytorch-operator/test_operator_conv": "matched",
        "simple/test_shrink": "refused_at_load"}


def test_a_wrong_answer_is_a_mismatch_not_a_pass():
    # the comparison the verdicts rest on can fail: a result off by more than the tolerance
    import numpy as np

    from backend_worker import RELATIVE_TOLERANCE, compare

    reference = np.linspace(-1, 1, 24, dtype=np.float32).reshape(1, 24)
    assert compare(reference.copy(), reference) is None
    assert "max abs error" in compare(reference + 3 * RELATIVE_TOLERANCE, reference)
    assert "shape" in compare(reference.reshape(1, 2, 12), reference)
