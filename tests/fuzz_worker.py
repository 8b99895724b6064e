"""The importer fuzzer's worker process: loads one ONNX model at a time with `engine.load`,
runs it, compares it with ONNX Runtime and replies with a JSON verdict.

It runs in its own process so a crash in native code (a segfault in a numba kernel fed an
unchecked shape, an abort in ONNX Runtime) kills only the worker, and the parent
(tests/test_fuzz_importer.py) turns the dead worker into a failed case instead of a dead
test session. One worker serves many cases: numba kernels are compiled per dtype
signature, not per shape, so after the first case nothing recompiles.

Protocol (one JSON object per line, both ways):

    parent -> worker  {"model": "<path of the .onnx bytes>", "seed": 7, "fuse_blocks": false,
                       "tiles": {"pointwise_pixels": 64, ...}, "threads": 2}
    worker -> parent  {"phase": "load"}, {"phase": "run", "batch": 2}, ...   (progress, so a
                      crash is attributed to the step that was running)
    worker -> parent  {"verdict": "...", ...}                              (last line of a case)

Verdicts: "rejected" (engine.load raised ModelError: fine), "matched" (ran at every batch
and matched ONNX Runtime), "matched_onnx_reference" (the same against onnx.reference, for a
model ONNX Runtime has no kernel for: ops at opset 6), "too_large" (loaded, but its activations exceed
ACTIVATION_BUDGET_FLOATS, so it is not run), "nonfinite_reference" (ran, same shape as ONNX
Runtime, but ONNX Runtime's output holds NaN or Inf, where the fast-math kernels are
unspecified), and the failures: "crash" (an exception other than ModelError), "mismatch",
"ort_refused" (we loaded a model ONNX Runtime will not load or run).

Reproduce one case by hand:  .venv/bin/python -m tests.fuzz_worker artifacts/fuzz/<case>.onnx
"""
from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

import engine  # noqa: E402  (engine first: it sets numba's environment)
import onnx
import onnxruntime as ort

# Relative tolerance of the whole-network tests (tests/conftest.assert_close_to_reference):
# max |engine - ORT| <= RELATIVE * max |ORT|.
RELATIVE_TOLERANCE = 1e-4
# A loaded model whose activations (all layer outputs of one run, float32 elements) exceed
# this is not run: a mutated input of 65536 x 65536 pixels is a valid model, not a bug,
# but running it would take minutes and gigabytes.
ACTIVATION_BUDGET_FLOATS = 16 * 2 ** 20
# Batches run when the input's batch dimension is symbolic (a fixed one is used as it is).
DYNAMIC_BATCHES = (1, 2)


def _emit(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def _declared_batch(proto: onnx.ModelProto, input_name: str) -> int | None:
    """The input's fixed batch size, or None when symbolic or unknown."""
    for value_info in proto.graph.input:
        if value_info.name == input_name:
            dims = value_info.type.tensor_type.shape.dim
            if dims and dims[0].HasField("dim_value"):
                return int(dims[0].dim_value)
    return None


def _activation_floats(model: engine.Model) -> int:
    """float32 elements of the input and every layer output for one image."""
    return int(np.prod(model.input_shape)) + sum(int(np.prod(layer.output_shape)) for layer in model.layers)


def compare(got: np.ndarray, reference: np.ndarray) -> tuple[str, str]:
    """("matched" | "mismatch" | "nonfinite_reference", detail)."""
    if got.shape != reference.shape:
        return "mismatch", f"shape {got.shape} != ONNX Runtime's {reference.shape}"
    if not np.isfinite(reference).all():
        count = int((~np.isfinite(reference)).sum())
        return "nonfinite_reference", f"ONNX Runtime output has {count} non-finite values"
    if not np.isfinite(got).all():
        return "mismatch", f"{int((~np.isfinite(got)).sum())} non-finite values where ONNX Runtime's are finite"
    scale = float(np.abs(reference).max()) if reference.size else 0.0
    error = float(np.abs(got.astype(np.float64) - reference).max()) if got.size else 0.0
    if error > RELATIVE_TOLERANCE * scale:
        return "mismatch", f"max abs error {error:.3g} > {RELATIVE_TOLERANCE:g} x max |ref| {scale:.3g}"
    return "matched", f"max abs error {error:.3g}, max |ref| {scale:.3g}"


class _OnnxReference:
    """onnx.reference.ReferenceEvaluator behind ORT's `run(None, feeds)` signature."""

    def __init__(self, proto: onnx.ModelProto):
        from onnx.reference import ReferenceEvaluator

        self.evaluator = ReferenceEvaluator(proto)

    def run(self, output_names, feeds):
        return self.evaluator.run(output_names, feeds)


def _ort_session(data: bytes):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3          # errors only: mutated models make it warn a lot
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def check_case(request: dict) -> dict:
    """Load, run and compare one model; returns the verdict dict (never raises)."""
    if "self_test" in request:          # used by the tests that prove the parent notices failures
        _self_test(request["self_test"])
    data = Path(request["model"]).read_bytes()
    _emit({"phase": "load"})
    try:
        model = engine.load(data)
    except engine.ModelError as exc:
        return {"verdict": "rejected", "error": _error(exc), "error_type": type(exc).__name__}
    except Exception as exc:  # noqa: BLE001 - any other type is the bug being looked for
        return {"verdict": "crash", "phase": "load", "error": _error(exc), "traceback": traceback.format_exc()}

    proto = onnx.ModelProto()
    proto.ParseFromString(data)          # engine.load parsed it, so this cannot fail
    declared = _declared_batch(proto, model.graph.input_name)
    batches = DYNAMIC_BATCHES if declared is None else (declared,)
    floats = _activation_floats(model) * max(batches)
    if floats > ACTIVATION_BUDGET_FLOATS:
        return {"verdict": "too_large", "detail": f"{floats} activation floats at batch {max(batches)}"}

    _emit({"phase": "ort_session"})
    reference_name = "onnxruntime"
    try:
        session = _ort_session(data)
        ort_error = None
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        session, ort_error = None, _error(exc)
        if "Could not find an implementation" in ort_error:
            # ORT has no kernel for an op at this (old) opset: a valid model ORT cannot run,
            # so the reference is ONNX's own Python evaluator instead
            session, ort_error, reference_name = _OnnxReference(proto), None, "onnx.reference"

    tiles = engine.Tiles(**request.get("tiles", {}))
    rng = np.random.default_rng(int(request.get("seed", 0)))
    details = []
    verdict = "matched"
    for batch in batches:
        x = rng.standard_normal((batch, *model.input_shape), dtype=np.float32)
        threads = min(batch, int(request.get("threads", 1)), engine.available_cores())
        _emit({"phase": "run", "batch": batch})
        try:
            got = model.run(x, threads=threads, tiles=tiles, fuse_blocks=bool(request.get("fuse_blocks", False)))
        except Exception as exc:  # noqa: BLE001
            return {"verdict": "crash", "phase": f"run batch {batch}", "error": _error(exc),
                    "traceback": traceback.format_exc()}
        if request.get("self_test") == "perturb":
            got = got + np.float32(1e-3) * np.abs(got).max()
        if session is None:
            continue                      # ours must still not crash; then report ORT's refusal
        _emit({"phase": "ort_run", "batch": batch})
        try:
            reference = session.run(None, {model.graph.input_name: x})[0]
        except Exception as exc:  # noqa: BLE001
            ort_error = _error(exc)
            break
        outcome, detail = compare(got, np.asarray(reference))
        details.append(f"batch {batch}: {detail}")
        if outcome == "mismatch":
            return {"verdict": "mismatch", "phase": f"compare batch {batch}", "error": detail}
        if outcome == "nonfinite_reference":
            verdict = outcome
        elif reference_name != "onnxruntime":
            verdict = "matched_onnx_reference"
    if ort_error is not None:
        return {"verdict": "ort_refused", "error": ort_error}
    return {"verdict": verdict, "detail": "; ".join(details), "layers": len(model.layers)}


def _self_test(kind: str) -> None:
    """Failures on purpose, so the tests can prove the parent reports each kind."""
    import os
    import signal

    if kind == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif kind == "hang":
        time.sleep(3600)
    elif kind == "exit":
        os._exit(3)


def _warm_up() -> None:
    """Load every kernel once (from numba's cache, or compiling it), so the first case's
    time limit measures the case, not the compiler."""
    from engine.zoo import mobilenet_v2

    model = engine.load(mobilenet_v2(0.35, 32, 10))
    x = np.zeros((2, *model.input_shape), np.float32)
    for fuse_blocks in (False, True):
        model.run(x[:1], fuse_blocks=fuse_blocks)
        model.run(x, threads=min(2, engine.available_cores()), fuse_blocks=fuse_blocks)


def main(argv: list[str]) -> int:
    if argv:                              # by hand: check the given model files, print verdicts
        for path in argv:
            verdict = check_case({"model": path, "seed": 0})
            print(path, json.dumps(verdict, indent=1))
        return 0
    _warm_up()
    _emit({"ready": True})
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        started = time.perf_counter()
        try:
            verdict = check_case(request)
        except Exception as exc:  # noqa: BLE001 - a bug of this worker itself: report it, keep serving
            verdict = {"verdict": "crash", "phase": "worker", "error": _error(exc),
                       "traceback": traceback.format_exc()}
        verdict["seconds"] = round(time.perf_counter() - started, 4)
        _emit(verdict)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
