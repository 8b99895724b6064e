"""engine.kernels.activation.emit_divide (the vector divide of SiLU and sigmoid) against
numpy's division, with the CPU's reciprocal estimate (where this host has one for the
lane width) and with the portable guess from the bits (what every other CPU runs): both
within 2 ulp over denominators 1 .. 1e35 (SiLU's 1 + exp(-v), v clamped to +-80)."""
from __future__ import annotations

import numba
import numpy as np
import pytest
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from engine.kernels import activation
from engine.kernels.layout import CB

pytestmark = pytest.mark.lanes


def _divider():
    """A fresh (uncached) njit function: out[i:i+CB] = a[i:i+CB] / b[i:i+CB] by emit_divide."""
    vector = ir.VectorType(ir.FloatType(), CB)

    @intrinsic
    def divide_block(typingctx, a, b, out, start):
        def codegen(context, builder, signature, args):
            pointers = []
            for array_type, value in zip(signature.args[:3], args[:3]):
                data = context.make_array(array_type)(context, builder, value).data
                pointers.append(builder.bitcast(builder.gep(data, [args[3]]), vector.as_pointer()))
            quotient = activation.emit_divide(builder, builder.load(pointers[0], align=4),
                                              builder.load(pointers[1], align=4))
            builder.store(quotient, pointers[2], align=4)
            return context.get_dummy_value()
        return types.void(a, b, out, start), codegen

    @njit
    def divide(a, b, out):
        for start in range(0, a.size, CB):
            divide_block(a, b, out, start)
    return divide


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="LLVM IR: needs the JIT")
@pytest.mark.parametrize("cpu_estimate", [True, False], ids=["cpu_estimate", "bit_guess"])
def test_emit_divide_is_within_two_ulp_of_numpy(cpu_estimate, monkeypatch):
    if not cpu_estimate:
        monkeypatch.setattr(activation, "_cpu_has", lambda feature: False)
    rng = np.random.default_rng(0)
    n = 64 * CB
    numerator = rng.uniform(-100, 100, n).astype(np.float32)
    denominator = np.exp(rng.uniform(0, 80, n)).astype(np.float32) + np.float32(1)
    denominator[:CB] = 1.0
    out = np.full(n, np.nan, np.float32)
    _divider()(numerator, denominator, out)
    expected = numerator / denominator
    ulp = np.spacing(np.abs(expected))
    assert np.all(np.abs(out - expected) <= 2 * ulp), np.max(np.abs(out - expected) / ulp)
