"""A SIMD vector as a numba value, so that a kernel can keep a block of accumulators in registers.

Why: LLVM's loop vectoriser only widens a kernel's *innermost* loop. A convolution written as
"for each tap: ``acc[t] += w · x[offset + t]`` over a run of ``t``" therefore vectorises, but its
accumulators live in memory: every multiply-add of every tap loads and stores them again, and the
loop is bound by loads and stores, well below the core's multiply-add rate. Register
blocking -- a block of outputs held in registers while the loop over the taps runs, stored once at
the end -- needs the vector to be a *value* that a loop can carry, as C intrinsics provide
(``__m256``). This module gives numba that value:

* :class:`Vec` is a numba type whose machine representation is an LLVM vector ``<lanes x float>``
  (8 × float32 or 4 × float64: one 256-bit AVX register; LLVM splits it into two 128-bit registers
  on a machine without AVX, and ``llvm.fma`` into a library call without FMA units: the code is
  portable, only slower there). 256 bits on AVX-512 machines too: 512-bit vectors doubled the
  products' rate in isolation (Xeon, Sapphire/Emerald Rapids) but padded small filter counts to
  16 and slowed whole training steps (SK 1.1×, LeNet-5 1.5×; docs/performance.md).
* A handful of intrinsics: :func:`vload` and :func:`vstore` (unaligned, unchecked: the caller keeps
  ``i + lanes`` inside the array), :func:`vsplat` (every lane the same scalar), :func:`vsplat_at`
  (every lane one element of an array: a broadcast load, without the negative-index test that
  ``array[i]`` compiles to), :func:`vadd`, :func:`vsub`,
  :func:`vfma`
  (``a·b + c`` with one rounding, LLVM's ``llvm.fma``), :func:`vsum` (the lanes added, for a dot
  product), :func:`veven` and :func:`vodd` (the even or odd elements of two vectors that hold
  ``2·lanes`` consecutive ones: a stride-2 load without a gather), :func:`vtranspose_copy` (a
  ``lanes × lanes`` block copied transposed, through registers), :func:`vselect_greater` (``a`` where
  ``x > y``, else ``b``: a running maximum and where it was found), :func:`vstore_int32` (a vector of
  whole numbers stored as int32) and :func:`vlanes` (the lane count for an array's dtype, a
  compile-time constant).

Inside a jitted loop, a few ``Vec`` variables updated with ``vfma`` become a few registers updated by
``vfmadd231ps``: the same code a C programmer writes with intrinsics, and still plain Python syntax.
Only the fast numba backend uses this (``import numcnn`` does not import numba).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

__all__ = [
    "Vec", "vload", "vstore", "vsplat", "vsplat_at", "vadd", "vsub", "vfma", "vsum", "vlanes", "veven", "vodd",
    "vtranspose_copy", "vselect_greater", "vstore_int32", "VECTOR_BITS", "lanes_for",
]  # fmt: skip

#: Bits per vector: one 256-bit AVX register.
VECTOR_BITS = 256

#: Lanes per vector, per numba float type.
LANES = {types.float32: VECTOR_BITS // 32, types.float64: VECTOR_BITS // 64}


def lanes_for(dtype: np.dtype | type) -> int:
    """Lanes of one vector of ``dtype`` (float32: 8, float64: 4): what the Python side pads
    filters and channels to, so that the kernels' vectors tile them."""
    return VECTOR_BITS // (8 * np.dtype(dtype).itemsize)


class Vec(types.Type):
    """``lanes`` values of ``dtype`` in one SIMD register (numba type)."""

    def __init__(self, dtype: types.Float, lanes: int) -> None:
        self.dtype = dtype
        self.lanes = lanes
        super().__init__(name=f"Vec({dtype} x {lanes})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type: Vec) -> None:
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.lanes))


def _vec_of(dtype) -> Vec:
    if dtype not in LANES:
        raise TypeError(f"SIMD vectors hold float32 or float64, not {dtype}")
    return Vec(dtype, LANES[dtype])


def _check_flat(array) -> None:
    # The pointer arithmetic below ignores strides: only a contiguous 1-D array is safe.
    if not (isinstance(array, types.Array) and array.ndim == 1 and array.layout == "C"):
        raise TypeError(f"vector loads and stores need a C-contiguous 1-D array, not {array}")


def _element_pointer(context, builder, array_type, array, index):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [index])


@intrinsic
def vlanes(typingctx, array):
    """The lane count for ``array``'s dtype, a constant the compiler folds into the loops."""
    lanes = _vec_of(array.dtype).lanes

    def codegen(context, builder, signature, args):
        return ir.Constant(ir.IntType(64), lanes)

    return types.int64(array), codegen


@intrinsic
def vload(typingctx, array, index):
    """``array[index : index + lanes]`` as a vector (1-D C-contiguous ``array``; no bounds check)."""
    _check_flat(array)
    vec = _vec_of(array.dtype)

    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        vector_type = context.get_value_type(vec)
        return builder.load(builder.bitcast(pointer, vector_type.as_pointer()), align=1)

    return vec(array, index), codegen


@intrinsic
def vstore(typingctx, array, index, value):
    """``array[index : index + lanes] = value`` (1-D C-contiguous ``array``; no bounds check)."""
    _check_flat(array)
    if not isinstance(value, Vec) or value.dtype != array.dtype:
        raise TypeError(f"cannot store {value} into an array of {array.dtype}")

    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        builder.store(args[2], builder.bitcast(pointer, args[2].type.as_pointer()), align=1)
        return context.get_dummy_value()

    return types.none(array, index, value), codegen


@intrinsic
def vsplat(typingctx, scalar):
    """A vector with ``scalar`` in every lane."""
    vec = _vec_of(scalar)

    def codegen(context, builder, signature, args):
        return _splat(builder, context.get_value_type(vec), vec.lanes, args[0])

    return vec(scalar), codegen


def _splat(builder, vector_type, lanes, scalar):
    first = builder.insert_element(ir.Constant(vector_type, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
    mask = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
    return builder.shuffle_vector(first, ir.Constant(vector_type, ir.Undefined), mask)


@intrinsic
def vsplat_at(typingctx, array, index):
    """A vector with ``array[index]`` in every lane (1-D C-contiguous ``array``; no bounds check, and
    ``index`` is an offset: no wrap-around of negative values)."""
    _check_flat(array)
    vec = _vec_of(array.dtype)

    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        return _splat(builder, context.get_value_type(vec), vec.lanes, builder.load(pointer))

    return vec(array, index), codegen


def _llvm_vector_intrinsic(builder, name, vector_type, arity):
    element = "f32" if isinstance(vector_type.element, ir.FloatType) else "f64"
    function_type = ir.FunctionType(vector_type, [vector_type] * arity)
    return cgutils.get_or_insert_function(builder.module, function_type, f"llvm.{name}.v{vector_type.count}{element}")


@intrinsic
def vadd(typingctx, a, b):
    """``a + b`` lane by lane."""
    if not (isinstance(a, Vec) and a == b):
        raise TypeError(f"vadd needs two vectors of one type, not {a}, {b}")

    def codegen(context, builder, signature, args):
        return builder.fadd(args[0], args[1])

    return a(a, b), codegen


@intrinsic
def vsub(typingctx, a, b):
    """``a − b`` lane by lane."""
    if not (isinstance(a, Vec) and a == b):
        raise TypeError(f"vsub needs two vectors of one type, not {a}, {b}")

    def codegen(context, builder, signature, args):
        return builder.fsub(args[0], args[1])

    return a(a, b), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """``a·b + c`` lane by lane, rounded once (a fused multiply-add)."""
    if not (isinstance(a, Vec) and a == b == c):
        raise TypeError(f"vfma needs three vectors of one type, not {a}, {b}, {c}")

    def codegen(context, builder, signature, args):
        return builder.call(_llvm_vector_intrinsic(builder, "fma", args[0].type, 3), args)

    return a(a, b, c), codegen


@intrinsic
def vsum(typingctx, a):
    """The sum of the lanes (pairwise: lanes 0..h−1 plus lanes h..2h−1, halving down to one)."""
    if not isinstance(a, Vec):
        raise TypeError(f"vsum needs a vector, not {a}")

    def codegen(context, builder, signature, args):
        value = args[0]
        width = a.lanes
        while width > 1:
            width //= 2
            low = ir.Constant(ir.VectorType(ir.IntType(32), width), list(range(width)))
            high = ir.Constant(ir.VectorType(ir.IntType(32), width), list(range(width, 2 * width)))
            value = builder.fadd(builder.shuffle_vector(value, value, low), builder.shuffle_vector(value, value, high))
        return builder.extract_element(value, ir.Constant(ir.IntType(32), 0))

    return a.dtype(a), codegen


def _every_other(a, b, first: int):
    if not (isinstance(a, Vec) and a == b):
        raise TypeError(f"veven / vodd need two vectors of one type, not {a}, {b}")
    mask = ir.Constant(ir.VectorType(ir.IntType(32), a.lanes), list(range(first, 2 * a.lanes, 2)))

    def codegen(context, builder, signature, args):
        return builder.shuffle_vector(args[0], args[1], mask)

    return a(a, b), codegen


@intrinsic
def veven(typingctx, a, b):
    """Elements ``0, 2, 4, …`` of the ``2·lanes`` elements ``a`` then ``b`` (one or two shuffles)."""
    return _every_other(a, b, 0)


@intrinsic
def vodd(typingctx, a, b):
    """Elements ``1, 3, 5, …`` of the ``2·lanes`` elements ``a`` then ``b``."""
    return _every_other(a, b, 1)


@intrinsic
def vselect_greater(typingctx, x, y, a, b):
    """``a`` where ``x > y``, else ``b``, lane by lane (an ordered comparison, as Python's ``>``: false
    where either is NaN)."""
    if not (isinstance(x, Vec) and x == y == a == b):
        raise TypeError(f"vselect_greater needs four vectors of one type, not {x}, {y}, {a}, {b}")

    def codegen(context, builder, signature, args):
        return builder.select(builder.fcmp_ordered(">", args[0], args[1]), args[2], args[3])

    return a(x, y, a, b), codegen


@intrinsic
def vstore_int32(typingctx, array, index, value):
    """``array[index : index + lanes] = value`` converted to int32 (``value`` whole numbers within int32's
    range; 1-D C-contiguous int32 ``array``; no bounds check)."""
    _check_flat(array)
    if not (isinstance(value, Vec) and array.dtype == types.int32):
        raise TypeError(f"vstore_int32 stores a vector into an int32 array, not {value} into {array.dtype}")

    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        integers = builder.fptosi(args[2], ir.VectorType(ir.IntType(32), value.lanes))
        builder.store(integers, builder.bitcast(pointer, integers.type.as_pointer()), align=1)
        return context.get_dummy_value()

    return types.none(array, index, value), codegen


@intrinsic
def vtranspose_copy(typingctx, src, src_at, src_stride, dst, dst_at, dst_stride, relu):
    """``dst[dst_at + j·dst_stride + i] = src[src_at + i·src_stride + j]`` for ``i, j < lanes``: a square
    block copied transposed (``relu``: ``max(value, 0)`` as numba's ``max`` has it, NaN kept).

    ``lanes`` vector loads, ``log2(lanes)`` rounds of ``lanes`` interleaving shuffles (vector ``i``
    with vector ``i + lanes/2``: after ``log2(lanes)`` rounds row ``j`` holds column ``j``), ``lanes``
    vector stores -- where an element-by-element copy between the layouts pays a load, a store and
    the index arithmetic for every element. Both arrays 1-D C-contiguous; no bounds checks.
    """
    _check_flat(src)
    _check_flat(dst)
    if src.dtype != dst.dtype:
        raise TypeError(f"vtranspose_copy copies between arrays of one dtype, not {src.dtype} and {dst.dtype}")
    vec = _vec_of(src.dtype)
    lanes = vec.lanes
    half = lanes // 2
    low = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [k // 2 + (lanes if k % 2 else 0) for k in range(lanes)])
    high = ir.Constant(
        ir.VectorType(ir.IntType(32), lanes), [half + k // 2 + (lanes if k % 2 else 0) for k in range(lanes)]
    )

    def codegen(context, builder, signature, args):
        src_array, src_index, src_step, dst_array, dst_index, dst_step, rectify = args
        vector_type = context.get_value_type(vec)
        rows = []
        for i in range(lanes):
            index = builder.add(src_index, builder.mul(src_step, ir.Constant(src_step.type, i)))
            pointer = _element_pointer(context, builder, signature.args[0], src_array, index)
            rows.append(builder.load(builder.bitcast(pointer, vector_type.as_pointer()), align=1))
        for _ in range(lanes.bit_length() - 1):  # log2(lanes) perfect shuffles
            mixed = []
            for i in range(half):
                mixed.append(builder.shuffle_vector(rows[i], rows[i + half], low))
                mixed.append(builder.shuffle_vector(rows[i], rows[i + half], high))
            rows = mixed
        zero = ir.Constant(vector_type, None)
        flag = context.cast(builder, rectify, signature.args[6], types.boolean)
        for j in range(lanes):
            value = rows[j]
            # max(value, 0) as numba's max: 0 where 0 > value (NaN stays NaN, −0 stays −0).
            value = builder.select(flag, builder.select(builder.fcmp_ordered("<", value, zero), zero, value), value)
            index = builder.add(dst_index, builder.mul(dst_step, ir.Constant(dst_step.type, j)))
            pointer = _element_pointer(context, builder, signature.args[3], dst_array, index)
            builder.store(value, builder.bitcast(pointer, vector_type.as_pointer()), align=1)
        return context.get_dummy_value()

    return types.none(src, src_at, src_stride, dst, dst_at, dst_stride, relu), codegen
