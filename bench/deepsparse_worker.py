"""DeepSparse in a process of its own, and the client that latency.py drives it with.

DeepSparse 1.8 (end of life) pins numpy < 2 and onnx < 1.15, so it cannot live in the
project's .venv; it lives in a venv of its own outside the repo (`make deepsparse-venv`
makes /work/deepsparse-venv) and is never a project dependency. That venv's python runs
this file as a worker:

    <deepsparse python> bench/deepsparse_worker.py MODEL          # serve on stdin/stdout
    <deepsparse python> bench/deepsparse_worker.py MODEL --check  # compare with onnxruntime

Protocol: one command per line on stdin, one JSON object per line on stdout ({"error":
"..."} when a command fails; the worker then carries on).

    (on start)                     -> {"version": "1.8.0", "isa": "avx2", "precision": "fp32"}
    setup BATCH THREADS [INPUT.npy] -> {"compile_seconds": s, "fraction_of_supported_ops": f}
                                       Engine(model, BATCH, THREADS); f < 1 means part of the
                                       net falls back to DeepSparse's bundled onnxruntime; the
                                       input is (BATCH, C, H, W) float32, seeded normal noise
                                       when no file is given
    time N                          -> {"seconds": [s, ...]}    N runs, perf_counter around
                                                                each engine.run only
    output OUT.npy                  -> {}                       one run; logits saved to OUT
    quit                            -> (exits)

Precision. DeepSparse runs float32 by default, but reads a runtime config,
$NM_CONFIG_DIR/deepsparse-config.yaml (else ~/.config/neuralmagic/deepsparse-config.yaml),
whose `default_precision: bf16` (or fp16) makes every Engine run in that precision on a CPU
that has it. The worker points NM_CONFIG_DIR at a config of its own holding only
`default_precision: fp32`, so a config on the host cannot change the row (its other options,
thread pinning among them, stay at DeepSparse's defaults), and reports that precision on
start. The model is the one our engine loads: float32 with no quantization ops, and
DeepSparse does not quantize by itself, so the row is fp32 without quantization.

Timing inside the worker keeps the pipe and process switch out of DeepSparse's figures, so
they compare with the in-process figures of the other engines. DeepSparse's idle threads do
not spin between runs (measured: 0 CPU seconds in the second after a run), so the worker does
not slow the engine timed next.

`DeepSparseRunner` (imported by latency.py, running in the project's python) starts the
worker and looks like the other engines there: `runner(x)` returns the logits; in addition
`runner.seconds(x)` is one run timed by the worker.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

import numpy as np

# DeepSparse's analytics (sparsezoo's GoogleAnalytics) post an event on import and on every
# Engine(); with this set they post nothing and skip the IP geolocation lookup too. There is
# no network here, so without it each event is a failed connection attempt.
ANALYTICS_OFF = {"NM_DISABLE_ANALYTICS": "1"}
PRECISION = "fp32"      # DeepSparse's default_precision, pinned in the worker's own runtime config
RUNTIME_CONFIG = f"default_precision: {PRECISION}\n"


# ---------------------------------------------------------------- worker (DeepSparse's venv)

def _serve(model_path: str, protocol) -> None:
    """Answer commands from stdin on `protocol` (a text file), one JSON line each."""
    import deepsparse
    from deepsparse.cpu import cpu_architecture

    def reply(obj) -> None:
        protocol.write(json.dumps(obj) + "\n")
        protocol.flush()

    reply({"version": deepsparse.__version__, "isa": cpu_architecture().isa, "precision": PRECISION})
    compiled = None
    inputs = None
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        try:
            if words[0] == "quit":
                return
            if words[0] == "setup":
                batch, threads = int(words[1]), int(words[2])
                compiled = None  # free the previous engine's threads and buffers first
                start = time.perf_counter()
                compiled = deepsparse.Engine(model=model_path, batch_size=batch, num_cores=threads)
                compile_seconds = time.perf_counter() - start
                shape = (batch, *compiled.input_shapes[0][1:])
                if len(words) > 3:
                    x = np.load(words[3])
                    if x.shape != shape or x.dtype != np.float32:
                        raise ValueError(f"input: expected float32 {shape}, got {x.dtype} {x.shape}")
                else:
                    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
                inputs = [np.ascontiguousarray(x)]
                reply({"compile_seconds": compile_seconds,
                       "fraction_of_supported_ops": compiled.fraction_of_supported_ops})
            elif words[0] == "time":
                if compiled is None:
                    raise ValueError("time before setup")
                seconds = []
                for _ in range(int(words[1])):
                    start = time.perf_counter()
                    compiled.run(inputs)
                    seconds.append(time.perf_counter() - start)
                reply({"seconds": seconds})
            elif words[0] == "output":
                if compiled is None:
                    raise ValueError("output before setup")
                np.save(words[1], compiled.run(inputs)[0])
                reply({})
            else:
                raise ValueError(f"unknown command {words[0]!r}: expected setup, time, output or quit")
        except Exception as exc:  # noqa: BLE001 - report to the client, keep serving
            reply({"error": f"{type(exc).__name__}: {exc}"})


def _check(model_path: str) -> int:
    """Print DeepSparse's largest |difference| from onnxruntime at batch 1 and 64, 1 and 2 cores."""
    import deepsparse
    import onnxruntime  # sparsezoo, a deepsparse dependency, brings it into the venv

    session = onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    worst = 0.0
    for batch in (1, 64):
        for threads in (1, 2):
            compiled = deepsparse.Engine(model=model_path, batch_size=batch, num_cores=threads)
            x = np.random.default_rng(0).standard_normal((batch, *compiled.input_shapes[0][1:]),
                                                         dtype=np.float32)
            expected = session.run(None, {name: x})[0]
            error = float(np.abs(compiled.run([x])[0] - expected).max())
            worst = max(worst, error)
            print(f"deepsparse {deepsparse.__version__} batch {batch} cores {threads}: max |deepsparse - "
                  f"onnxruntime {onnxruntime.__version__}| = {error:.2g} (max |logit| {np.abs(expected).max():.2f})")
            del compiled
    return 0 if worst < 1e-3 else 1


def _pin_precision() -> tempfile.TemporaryDirectory:
    """Point DeepSparse's runtime config (NM_CONFIG_DIR) at a folder whose
    deepsparse-config.yaml sets only default_precision: fp32; returns the folder, which must
    outlive every Engine. Call before deepsparse is imported."""
    folder = tempfile.TemporaryDirectory(prefix="deepsparse-config-")
    (Path(folder.name) / "deepsparse-config.yaml").write_text(RUNTIME_CONFIG)
    os.environ["NM_CONFIG_DIR"] = folder.name
    return folder


def main(argv=None) -> int:
    import argparse
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="ONNX model path")
    parser.add_argument("--check", action="store_true", help="compare with onnxruntime and exit")
    args = parser.parse_args(argv)
    os.environ.update(ANALYTICS_OFF)  # before deepsparse is imported
    pinned_config = _pin_precision()   # noqa: F841 - kept until the worker exits: each Engine reads it
    if args.check:
        return _check(args.model)
    # The protocol owns the real stdout; anything the libraries print (DeepSparse's banner
    # comes from C++ on fd 1) goes to stderr instead.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        _serve(args.model, protocol)
    except Exception as exc:  # noqa: BLE001 - e.g. deepsparse not importable, or refuses the CPU
        protocol.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        protocol.flush()
        return 1
    return 0


# ------------------------------------------------------------- client (the project's python)

def _stop(process: subprocess.Popen, scratch: tempfile.TemporaryDirectory) -> None:
    if process.poll() is None:
        try:
            process.stdin.write("quit\n")
            process.stdin.close()
            process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
    scratch.cleanup()


class DeepSparseRunner:
    """DeepSparse on `model_path` with `threads` cores, in a worker run by `python`.

    `runner(x)` -> logits (N, classes) float32; `runner.seconds(x)` -> seconds of one
    engine.run timed in the worker. `precision` is what the worker pinned DeepSparse to
    ("fp32", see the module docstring). x: (N, C, H, W) float32; the worker recompiles for a new
    x (new batch size), which takes seconds. `version` is DeepSparse's. Raises RuntimeError
    when the worker cannot start or a command fails; the worker stops with the runner (or
    `close()`).
    """

    def __init__(self, python: str, model_path: Path, threads: int):
        self.threads = threads
        self._scratch = tempfile.TemporaryDirectory(prefix="deepsparse-")
        try:
            self._process = subprocess.Popen(
                [python, str(Path(__file__).resolve()), str(model_path)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                env={**os.environ, **ANALYTICS_OFF})
        except OSError as exc:
            self._scratch.cleanup()
            raise RuntimeError(f"cannot start {python}: {exc}") from exc
        self._finalizer = weakref.finalize(self, _stop, self._process, self._scratch)
        self._input = None  # the array the worker was last set up with
        hello = self._ask(None)
        self.version = hello["version"]
        self.isa = hello["isa"]
        self.precision = hello.get("precision", "unknown precision")

    def _ask(self, command: str | None) -> dict:
        if command is not None:
            self._process.stdin.write(command + "\n")
            self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"deepsparse worker exited with code {self._process.wait()} (its stderr is above)")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"deepsparse worker: {reply['error']}")
        return reply

    def _set_up(self, x: np.ndarray) -> None:
        if x is not self._input:
            path = Path(self._scratch.name) / "input.npy"
            np.save(path, np.ascontiguousarray(x, dtype=np.float32))
            self._ask(f"setup {x.shape[0]} {self.threads} {path}")
            self._input = x

    def seconds(self, x: np.ndarray) -> float:
        """One run on x, in seconds, measured in the worker around engine.run."""
        self._set_up(x)
        return self._ask("time 1")["seconds"][0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self._set_up(x)
        path = Path(self._scratch.name) / "output.npy"
        self._ask(f"output {path}")
        return np.load(path)

    def close(self) -> None:
        self._finalizer()


if __name__ == "__main__":
    raise SystemExit(main())
