"""Runs cases of the onnx wheel's backend test data through the engine and reports a JSON
verdict per case: the worker of tests/test_onnx_backend_models.py.

It runs in its own process so a crash in native code (a numba kernel fed an unchecked
shape, a segfault, an abort) kills only the worker; the parent sees which case was running
from the "start" line with no verdict after it. One worker runs a batch of cases: numba
kernels are compiled per dtype signature, not per shape, so later cases compile nothing.

A case is "<folder>/<name>" under onnx/backend/test/data/: a folder holding model.onnx and
test_data_set_*/{input,output}_*.pb, or "light/light_<name>" (light_<name>.onnx and its
light_<name>_output_0.pb, whose input onnx's runner makes: arange(n) / n in the input's
shape, dynamic dims 1), or "node/<name>": one of onnx's node test cases
(onnx.backend.test.case.node, model and data made in memory).

Protocol (one JSON object per line on stdout):

    {"case": "...", "phase": "start"}
    {"case": "...", "verdict": "...", "detail": "..."}                    (last line of a case)

Verdicts that pass: "matched" (every data set matched its reference output within
RELATIVE_TOLERANCE), "refused_at_load" (ModelError or UnsupportedOperatorError), and
"refused_at_run" (the reference input is not one the loaded model takes: a ValueError about
`x`, the input). Failures: "mismatch", "error" (any other exception).

Reproduce by hand:  .venv/bin/python -m tests.backend_worker pytorch-operator/test_operator_flatten
"""
from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from pathlib import Path

import numpy as np

import engine  # noqa: E402  (engine first: it sets numba's environment)
import onnx
from onnx import numpy_helper

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
# What the backend cases are compared with: max |engine - reference| <= RELATIVE * max |reference|
# (tests/conftest.assert_close_to_reference), or <= ABSOLUTE_FLOOR where the reference is all zeros.
RELATIVE_TOLERANCE = 1e-4
ABSOLUTE_FLOOR = 1e-6


def all_cases() -> list[str]:
    """Every runnable model of the backend test data, as "<folder>/<name>". real/ holds no
    models, only data.json pointers to the light/ ones (tests check they do)."""
    cases = [f"light/{path.stem}" for path in sorted((DATA / "light").glob("light_*.onnx"))]
    for folder in ("pytorch-converted", "pytorch-operator", "simple"):
        cases += [f"{folder}/{path.parent.name}" for path in sorted((DATA / folder).glob("*/model.onnx"))]
    return cases


def _tensor(path: Path) -> np.ndarray:
    return numpy_helper.to_array(onnx.load_tensor(str(path)))


def _light_input(model_path: Path) -> np.ndarray:
    """The input onnx's runner feeds a light model (runner.generate_dummy_data, random=False)."""
    proto = onnx.load(str(model_path), load_external_data=False)
    initializers = {init.name for init in proto.graph.initializer}
    (value_info,) = [i for i in proto.graph.input if i.name not in initializers]
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in value_info.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


@functools.cache
def _node_cases() -> dict:
    """onnx's node test cases by name (onnx.backend.test.case.node: the models and data the
    wheel's node/ folder is generated from; the wheel does not ship that folder)."""
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():         # some cases' references divide by zero on purpose
        warnings.simplefilter("ignore")
        return {case.name: case for case in collect_testcases()}


def case_files(case: str) -> tuple[Path | onnx.ModelProto, list]:
    """(model path or ModelProto, [(inputs, outputs) per data set]) of a case; the data sets
    are read lazily by the caller (a model refused at load may have inputs that are not
    tensors). "node/<name>": a case of onnx's node tests, built in memory."""
    folder, name = case.split("/", 1)
    if folder == "node":
        node_case = _node_cases()[name]
        return node_case.model, [(lambda i=inputs: list(i), lambda o=outputs: list(o))
                                 for inputs, outputs in node_case.data_sets]
    if folder == "light":
        model_path = DATA / "light" / f"{name}.onnx"
        return model_path, [(lambda: [_light_input(model_path)],
                             lambda: [_tensor(DATA / "light" / f"{name}_output_0.pb")])]
    case_dir = DATA / folder / name
    sets = []
    for data_set in sorted(case_dir.glob("test_data_set_*")):
        sets.append((lambda d=data_set: [_tensor(p) for p in sorted(d.glob("input_*.pb"))],
                     lambda d=data_set: [_tensor(p) for p in sorted(d.glob("output_*.pb"))]))
    return case_dir / "model.onnx", sets


def compare(got: np.ndarray, reference: np.ndarray) -> str | None:
    """None if `got` matches `reference` (shape, and the stated tolerance); else what differs."""
    if got.shape != reference.shape:
        return f"shape {got.shape} != reference {reference.shape}"
    if not np.isfinite(got).all():
        return "non-finite values in the output"
    scale = float(np.abs(reference).max()) if reference.size else 0.0
    error = float(np.abs(got - reference.astype(np.float32)).max()) if reference.size else 0.0
    if error > max(RELATIVE_TOLERANCE * scale, ABSOLUTE_FLOOR):
        return f"max abs error {error:.3g} > {RELATIVE_TOLERANCE:g} x max |reference| {scale:.3g}"
    return None


def run_case(case: str) -> dict:
    model_path, data_sets = case_files(case)
    try:
        model = engine.load(model_path)
    except engine.ModelError as exc:
        return {"verdict": "refused_at_load", "detail": f"{type(exc).__name__}: {exc}"[:500]}
    if not data_sets:
        return {"verdict": "error", "detail": "loaded, but the case has no data set to check it against"}
    threads = min(2, engine.available_cores())
    for index, (read_inputs, read_outputs) in enumerate(data_sets):
        inputs, outputs = read_inputs(), read_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            return {"verdict": "error", "detail": f"loaded a model whose data set {index} has {len(inputs)} "
                                                  f"inputs and {len(outputs)} outputs (the engine has one each)"}
        try:
            got = model.run(inputs[0], threads=threads)
        except ValueError as exc:
            if str(exc).startswith("x "):
                return {"verdict": "refused_at_run", "detail": str(exc)[:500]}
            raise
        difference = compare(got, outputs[0])
        if difference is not None:
            return {"verdict": "mismatch", "detail": f"data set {index}: {difference}"}
    return {"verdict": "matched", "detail": f"{len(data_sets)} data set(s)"}


def main(cases: list[str]) -> int:
    abort_on = os.environ.get("ROOFLINE_BACKEND_WORKER_ABORT")   # the harness's own test: die as a crash would
    for case in cases:
        print(json.dumps({"case": case, "phase": "start"}), flush=True)
        if case == abort_on:
            os.abort()
        try:
            verdict = run_case(case)
        except Exception as exc:  # noqa: BLE001  (any other exception is the failure being looked for)
            verdict = {"verdict": "error",
                       "detail": f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"[:2000]}
        print(json.dumps({"case": case, **verdict}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:] or all_cases()))
