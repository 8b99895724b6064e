"""Activation functions of the kernel epilogues, shared by every kernel and the importer.

An activation is carried as (name, alpha, beta): the graph's `Layer.activation` and the
public kernel wrappers' `activation=` keyword. The numba kernels take it as three scalars
(code, alpha, beta) from `activation_code`, and apply it with `activate`:

    epilogue:  v = acc + bias [+ residual];  v = activate(v);  v = clip(v, low, high)

    name          code  f(v)                              f(0)
    none          0     v                                 0
    hardswish     1     v * clamp(alpha * v + beta, 0, 1)  0   (ONNX HardSwish: 1/6, 1/2)
    silu          2     v * sigmoid(v)                     0   (Sigmoid + Mul, "Swish")
    hardsigmoid   3     clamp(alpha * v + beta, 0, 1)      beta (ONNX default 0.2, 0.5)
    sigmoid       4     1 / (1 + exp(-v))                  1/2

How the kernels apply it: the numba kernels' scalar code calls `activate` (linear); a conv
epilogue's register scratch goes through `activate_lanes`, and the 1x1 micro-kernel (an
LLVM-IR intrinsic) through `emit_activation`, which emits the same vector code: hardswish as
an FMA and two selects, silu as v / (1 + exp(-v)) with a polynomial exp (`emit_exp`, as
`exp_approx`) and a division by Newton steps (`emit_divide`). No libm call, so the code is
vectorised, and explicit FMAs only, so the kernels built with fast-math flags and without
give the same values.

A conv kernel's padded output lanes must stay exactly 0 (they see zero weights and bias),
so a conv epilogue only takes the activations with f(0) = 0 (`ZERO_PRESERVING`); the others
run where no lane is padded (a flat tensor, a squeeze-and-excitation gate) or in the
stand-alone activation step, which leaves padded lanes alone.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from engine.kernels._common import FASTMATH
from engine.kernels.layout import CB

NONE, HARDSWISH, SILU, HARDSIGMOID, SIGMOID = 0, 1, 2, 3, 4
CODES = {"none": NONE, "hardswish": HARDSWISH, "silu": SILU, "hardsigmoid": HARDSIGMOID, "sigmoid": SIGMOID}
ZERO_PRESERVING = ("none", "hardswish", "silu")
NO_ACTIVATION = ("none", 0.0, 0.0)
HARDSWISH_DEFAULT = ("hardswish", 1.0 / 6.0, 0.5)
# exp(-v) overflows float32 past v = -88.7; the kernels compile with 'ninf', so the argument
# is clamped to +-EXP_LIMIT first (sigmoid is 0 or 1 to float32 precision there anyway)
EXP_LIMIT = 80.0
# exp(x) = 2^n * exp(r), n = round(x * log2(e)), r = x - n * ln 2 in [-ln2/2, ln2/2]:
# ln 2 in two parts (Cody-Waite: n * LN2_HIGH is exact for |n| < 2^15, LN2_HIGH having 10
# significant bits), exp(r) by Cephes' expf polynomial (about 1 ulp). n comes from adding
# ROUND_MAGIC = 1.5 * 2^23: the float's low mantissa bits then hold n, and
# (bits + 127) << 23 are the bits of 2^n (|x| <= EXP_LIMIT: 11 <= n + 127 <= 242).
LOG2E = 1.4426950408889634
LN2_HIGH = 0.693359375
LN2_LOW = -2.12194440e-4
ROUND_MAGIC = 12582912.0
EXP_POLYNOMIAL = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
                  5.0000001201e-1)   # exp(r) = 1 + r + r^2 * P(r), P's coefficients highest first


def activation_code(function: str, activation, zero_preserving: bool = True) -> tuple[int, float, float]:
    """(code, alpha, beta) of `activation` = (name, alpha, beta) for a numba kernel, or a
    ValueError naming `function` and what is wrong. With `zero_preserving`, only the
    activations with f(0) = 0 (a conv epilogue: padded lanes must stay 0)."""
    try:
        name, alpha, beta = activation
        alpha, beta = float(alpha), float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"{function}: activation must be (name, alpha, beta), got {activation!r}") from None
    if name not in CODES:
        raise ValueError(f"{function}: activation {name!r} is not one of {', '.join(CODES)}")
    if zero_preserving and name not in ZERO_PRESERVING:
        raise ValueError(f"{function}: activation {name!r} is not 0 at 0, so padded channels would not stay 0; "
                         f"a conv epilogue takes {', '.join(ZERO_PRESERVING)}")
    if not (math.isfinite(alpha) and math.isfinite(beta)):
        raise ValueError(f"{function}: activation {name!r} needs finite alpha and beta, got {alpha}, {beta}")
    return CODES[name], alpha, beta


_NO_ACTIVATION_ARGUMENTS = (np.int64(NONE), np.float32(0.0), np.float32(0.0))


def kernel_activation(function: str, activation, zero_preserving: bool = True) -> tuple:
    """`activation_code`'s (code, alpha, beta) typed as the numba kernels take them:
    (np.int64, np.float32, np.float32), or a ValueError naming `function`; also refuses an
    alpha or beta beyond float32's range (it would be inf in the kernel)."""
    if activation is NO_ACTIVATION:   # the common case, without the checks
        return _NO_ACTIVATION_ARGUMENTS
    code, alpha, beta = activation_code(function, activation, zero_preserving)
    with np.errstate(over="ignore"):
        alpha32, beta32 = np.float32(alpha), np.float32(beta)
    if not (np.isfinite(alpha32) and np.isfinite(beta32)):
        raise ValueError(f"{function}: activation {activation[0]!r} needs alpha and beta within float32's range, "
                         f"got {alpha}, {beta}")
    return np.int64(code), alpha32, beta32


def activation_flops(activation) -> int:
    """FLOPs per element of `activation` (counted as other_flops): mul-add, clamp and the
    gating multiply for hardswish (4), exp + add + divide + multiply for silu (4), ..."""
    return {"none": 0, "hardswish": 4, "silu": 4, "hardsigmoid": 3, "sigmoid": 3}[activation[0]]


# ---------------------------------------------------------------------------- float bits

if numba.config.DISABLE_JIT:     # the kernels run as Python: numpy views
    def _float_bits(value):
        return int(np.float32(value).view(np.int32))

    def _bits_float(bits):
        return np.int32(bits).view(np.float32)
else:
    @intrinsic
    def _float_bits(typingctx, value):
        """The int32 bits of a float32 (a bitcast: LLVM vectorises it with the code around it)."""
        if value != types.float32:
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(32))

        return types.int32(types.float32), codegen

    @intrinsic
    def _bits_float(typingctx, bits):
        """The float32 of int32 bits."""
        if bits != types.int32:
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())

        return types.float32(types.int32), codegen


@njit(cache=True, inline="always", fastmath=FASTMATH)
def exp_approx(x):
    """exp(x) of a float32 x, clamped to +-EXP_LIMIT first, to about 1 ulp; no libm call, so a
    lane loop of it vectorises (LLVM has no vector exp without SVML: it would call expf per
    lane). The same algorithm as `emit_exp` (see LOG2E ... EXP_POLYNOMIAL)."""
    x = min(max(x, np.float32(-EXP_LIMIT)), np.float32(EXP_LIMIT))
    t = x * np.float32(LOG2E) + np.float32(ROUND_MAGIC)
    n = t - np.float32(ROUND_MAGIC)
    r = x - n * np.float32(LN2_HIGH)
    r = r - n * np.float32(LN2_LOW)
    p = np.float32(EXP_POLYNOMIAL[0])
    p = p * r + np.float32(EXP_POLYNOMIAL[1])
    p = p * r + np.float32(EXP_POLYNOMIAL[2])
    p = p * r + np.float32(EXP_POLYNOMIAL[3])
    p = p * r + np.float32(EXP_POLYNOMIAL[4])
    p = p * r + np.float32(EXP_POLYNOMIAL[5])
    p = p * (r * r) + r + np.float32(1.0)
    scale = _bits_float(np.int32(((_float_bits(t) + 127) & 0xFF) << 23))
    return p * scale


@njit(cache=True, inline="always", fastmath=FASTMATH)
def activate(v, code, alpha, beta):
    """f(v) of activation `code` (float32 v, alpha, beta); the table in the module docstring."""
    if code == HARDSWISH:
        return v * min(max(alpha * v + beta, np.float32(0.0)), np.float32(1.0))
    if code == SILU:
        return v / (np.float32(1.0) + exp_approx(-v))
    if code == HARDSIGMOID:
        return min(max(alpha * v + beta, np.float32(0.0)), np.float32(1.0))
    if code == SIGMOID:
        return np.float32(1.0) / (np.float32(1.0) + exp_approx(-v))
    return v


# ---------------------------------------------------------------------------- LLVM IR

def emit_exp(builder, x):
    """LLVM IR of `exp_approx` on a <lanes x float> vector `x` (for an @intrinsic's
    codegen; llvm.exp.* would be lowered to one libm call per lane), as (p, scale) with
    exp(x) = p * scale: the caller multiplies, or fuses the product into an FMA itself (a
    caller compiled with the 'contract' fast-math flag and one without then agree)."""
    vector = x.type
    lanes = vector.count
    int_vector = ir.VectorType(ir.IntType(32), lanes)
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3),
                                         f"llvm.fma.v{lanes}f32")

    def splat(value):
        return ir.Constant(vector, [value] * lanes)

    low, high = splat(-EXP_LIMIT), splat(EXP_LIMIT)
    x = builder.select(builder.fcmp_ordered("<", x, low), low, x)
    x = builder.select(builder.fcmp_ordered(">", x, high), high, x)
    t = builder.call(fma, [x, splat(LOG2E), splat(ROUND_MAGIC)])
    n = builder.fsub(t, splat(ROUND_MAGIC))
    r = builder.call(fma, [n, splat(-LN2_HIGH), x])
    r = builder.call(fma, [n, splat(-LN2_LOW), r])
    p = splat(EXP_POLYNOMIAL[0])
    for coefficient in EXP_POLYNOMIAL[1:]:
        p = builder.call(fma, [p, r, splat(coefficient)])
    p = builder.fadd(builder.call(fma, [p, builder.fmul(r, r), r]), splat(1.0))
    # (n + 127 is in [11, 243], the low 9 bits of t + 127: the shift drops the rest, so no mask)
    bits = builder.add(builder.bitcast(t, int_vector), ir.Constant(int_vector, [127] * lanes))
    scale = builder.bitcast(builder.shl(bits, ir.Constant(int_vector, [23] * lanes)), vector)
    return p, scale


# initial guess of 1/d from d's bits (relative error <= 12.4 %), refined by Newton's method
RECIPROCAL_MAGIC = 0x7EF311C7


def _cpu_has(feature: str) -> bool:
    """Whether the CPU numba compiles for has `feature` (numba.config.CPU_FEATURES, which
    engine._numba_env sets from the host: "+avx512f,..."); False when unknown."""
    return f"+{feature}" in (numba.config.CPU_FEATURES or "").split(",")


def _reciprocal_estimate(builder, denominator):
    """(estimate of 1 / denominator, Newton steps it needs to reach float32 precision): the
    CPU's own reciprocal approximation where the vector is one register of this CPU
    (vrcp14ps, 16 lanes, AVX-512: relative error < 2^-14; vrcpps, 8 lanes, AVX: < 1.5 * 2^-12),
    one Newton step; else a guess from the bits (RECIPROCAL_MAGIC, error <= 12.4 %), three."""
    vector = denominator.type
    lanes = vector.count
    if lanes == 16 and _cpu_has("avx512f"):
        estimate = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vector, [vector, vector, ir.IntType(16)]), "llvm.x86.avx512.rcp14.ps.512")
        return builder.call(estimate, [denominator, ir.Constant(vector, None), ir.Constant(ir.IntType(16), -1)]), 1
    if lanes == 8 and _cpu_has("avx"):
        estimate = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector]),
                                                  "llvm.x86.avx.rcp.ps.256")
        return builder.call(estimate, [denominator]), 1
    int_vector = ir.VectorType(ir.IntType(32), lanes)
    return builder.bitcast(builder.sub(ir.Constant(int_vector, [RECIPROCAL_MAGIC] * lanes),
                                       builder.bitcast(denominator, int_vector)), vector), 3


def emit_divide(builder, numerator, denominator):
    """LLVM IR of numerator / denominator (float vectors, denominator >= 1 and normal) to
    about 1 ulp without an fdiv: numba's fast-math pass gives every fdiv 'arcp', which lets
    LLVM replace it by a reciprocal estimate in kernels compiled with fastmath and not in
    the others (the 1x1 conv and the fused block would then differ by an ulp). Explicit FMAs
    give one result everywhere, and cost less than a vector divide: an estimate of the
    reciprocal (`_reciprocal_estimate`: the CPU's, or a guess from the bits), Newton steps
    to float32 precision (the guess: error 0.124 -> 0.015 -> 2.4e-4 -> 6e-8; the CPU's
    estimate: 2^-14 -> 2^-28 in one), one correction of the quotient. With the CPU's
    estimate SiLU costs about a quarter fewer instructions (bench/README, "Batch 1")."""
    vector = denominator.type
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3),
                                         f"llvm.fma.v{vector.count}f32")
    one = ir.Constant(vector, [1.0] * vector.count)
    negative = builder.fsub(ir.Constant(vector, None), denominator)
    reciprocal, steps = _reciprocal_estimate(builder, denominator)
    for _ in range(steps):      # y += y * (1 - d * y)
        reciprocal = builder.call(fma, [reciprocal, builder.call(fma, [negative, reciprocal, one]), reciprocal])
    quotient = builder.fmul(numerator, reciprocal)
    remainder = builder.call(fma, [negative, quotient, numerator])
    return builder.call(fma, [remainder, reciprocal, quotient])


def emit_activation(builder, code: int, value, alpha, beta):
    """LLVM IR of `activate` for a constant `code` on a <lanes x float> vector `value`;
    alpha, beta: vectors (the scalars splatted). The caller branches on the run-time code."""
    vector = value.type
    zero, one = ir.Constant(vector, None), ir.Constant(vector, [1.0] * vector.count)
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3),
                                         f"llvm.fma.v{vector.count}f32")
    if code == NONE:
        return value
    if code in (HARDSWISH, HARDSIGMOID):
        gate = builder.call(fma, [value, alpha, beta])
        gate = builder.select(builder.fcmp_ordered("<", gate, zero), zero, gate)
        gate = builder.select(builder.fcmp_ordered(">", gate, one), one, gate)
        return builder.fmul(value, gate) if code == HARDSWISH else gate
    if code in (SILU, SIGMOID):
        # 1 + exp(-v) as one FMA, written out: the same result with and without 'contract'
        denominator = builder.call(fma, [*emit_exp(builder, builder.fsub(zero, value)), one])
        return emit_divide(builder, value if code == SILU else one, denominator)
    raise ValueError(f"emit_activation: unknown activation code {code}")


def _activate_lanes_intrinsic(lanes: int):
    """`activate_lanes` for <lanes x float> vectors (see there)."""
    vector = ir.VectorType(ir.FloatType(), lanes)

    @intrinsic
    def activate_lanes(typingctx, values, count, code, alpha, beta):
        if not (isinstance(values, types.Array) and values.dtype == types.float32 and values.ndim == 1
                and isinstance(count, types.Integer) and isinstance(code, types.Integer)
                and alpha == types.float32 and beta == types.float32):
            return None

        def codegen(context, builder, signature, args):
            values_value, count_value, code_value, alpha_value, beta_value = args
            data = context.make_array(signature.args[0])(context, builder, values_value).data
            chunks = builder.sdiv(context.cast(builder, count_value, signature.args[1], types.int64),
                                  ir.Constant(ir.IntType(64), lanes))
            code_value = context.cast(builder, code_value, signature.args[2], types.int64)

            def splat(scalar):
                one = builder.insert_element(ir.Constant(vector, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
                return builder.shuffle_vector(one, ir.Constant(vector, ir.Undefined),
                                              ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))

            alpha_vector, beta_vector = splat(alpha_value), splat(beta_value)
            done = builder.append_basic_block("activate.done")
            switch = builder.switch(code_value, done)
            for code_constant in (HARDSWISH, SILU):    # a conv epilogue's (ZERO_PRESERVING)
                case = builder.append_basic_block(f"activate.{code_constant}")
                switch.add_case(ir.Constant(ir.IntType(64), code_constant), case)
                builder.position_at_end(case)
                with cgutils.for_range(builder, chunks) as loop:
                    pointer = builder.bitcast(builder.gep(data, [builder.mul(loop.index, ir.Constant(
                        ir.IntType(64), lanes))]), vector.as_pointer())
                    value = builder.load(pointer, align=4)
                    builder.store(emit_activation(builder, code_constant, value, alpha_vector, beta_vector), pointer,
                                  align=4)
                builder.branch(done)
            builder.position_at_end(done)
            return context.get_dummy_value()

        return types.void(values, count, code, alpha, beta), codegen

    return activate_lanes


def _activate_lanes_python(values, count, code, alpha, beta):
    """`activate_lanes` as numpy (NUMBA_DISABLE_JIT=1)."""
    if code in (HARDSWISH, SILU):
        values[:count] = activate_array(values[:count], code, alpha, beta)


def activate_array(values: np.ndarray, code: int, alpha: float, beta: float) -> np.ndarray:
    """`activate` on a float32 numpy array (the kernels' NUMBA_DISABLE_JIT fallbacks)."""
    values = np.asarray(values, np.float32)
    alpha, beta = np.float32(alpha), np.float32(beta)
    with np.errstate(over="ignore"):
        if code == HARDSWISH:
            return values * np.clip(alpha * values + beta, np.float32(0), np.float32(1))
        if code == HARDSIGMOID:
            return np.clip(alpha * values + beta, np.float32(0), np.float32(1))
        clamped = np.clip(values, np.float32(-EXP_LIMIT), np.float32(EXP_LIMIT))
        if code == SILU:
            return values / (np.float32(1) + np.exp(-clamped))
        if code == SIGMOID:
            return np.float32(1) / (np.float32(1) + np.exp(-clamped))
    return values


# activate_lanes(values, count, code, alpha, beta): values[:count] = activate(values[:count], code,
# alpha, beta) in place for code HARDSWISH or SILU (the conv epilogues' activations; any other
# code leaves the values), count a multiple of CB, for a kernel's register scratch
# (engine.kernels._common.register_scratch) between its sums and its clip. The vector code
# of the 1x1 micro-kernel's epilogue (emit_activation), CB lanes at a time, after one branch
# on the code: a lane loop of `activate` is not vectorised once SiLU's exp makes it too long
# to unroll (it stays a scalar loop with a division per lane, and keeps the scratch in memory).
if numba.config.DISABLE_JIT:
    activate_lanes = _activate_lanes_python
else:
    activate_lanes = _activate_lanes_intrinsic(CB)
