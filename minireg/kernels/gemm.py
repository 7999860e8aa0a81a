"""Matrix products for the large-batch path's MLP tiles (kernels/tiled.py), blocked in registers.

    product(A, ao, sap, sak, B, bo, sbk, K, C, co, scp, P, Q, acc, epilogue, M):
        C[co + p·scp + q]  =  Σ_{k<K} A[ao + p·sap + k·sak] · B[bo + k·sbk + q]      (p < P, q < Q)
        (with ``acc``: added to what C holds, as the continuation of the same sum; ``epilogue``:
        the sum as it is, or relu of it (a hidden layer's activation), or the sum times relu's
        derivative read from M (a delta), stored without a pass of their own)

Every entry of C is one sum over k in order, k = 0, 1, …, K−1, each term added with a fused
multiply-add (``llvm.fmuladd``: one rounding where the CPU has FMA, a multiply and an add where it
has not). Nothing is reassociated: the blocking below only decides which entries are computed
together, never the order of an entry's terms, so an entry has the same bits whichever block
computes it, on any vector width, and a product of K rows continued (``acc``) by one of K' rows is
bit for bit the product of the K + K' rows. Only the CPU's FMA (or not) can change the last bits.

The blocks: ``MR`` rows of C by ``NV`` vectors of 256 bits (8 float32 or 4 float64) of its columns
are held in registers while k runs (the micro-kernel, an LLVM intrinsic below: numba cannot hold a
vector in a variable). For each k it loads NV vectors of B's row k (contiguous: B[k, q:q+width]),
and for each of the MR rows one value of A, broadcast, and multiply-adds it into the row's NV
accumulators: MR·NV independent chains of fused multiply-adds and MR + NV loads, which is what
keeps both FMA units of a core busy (4 × 2 vectors: ~85-95% of one core's float32 peak on a Zen 3
when the operands sit in L1). Columns left over from whole vectors and rows left over from MR are
done by the same code on smaller blocks, down to one lane (plain scalars). Long sums are cut into
chunks of ``KC`` terms (each chunk continues the sum: the same bits) so that the rows of A and B
that a chunk reads stay in L1 while all blocks of C go over them.

No allocation and no numba reference counting (the kernels are compiled with ``_nrt=False``);
the arrays are 1-D, C-contiguous views the caller owns.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ._jit import kernel

# what a product stores: the sums, relu of the sums (0 where a sum is <= 0, NaN kept: activations.
# activate's relu), or the sums times relu's derivative taken from relu's output M (0 where M <= 0,
# else 1: activations.derivative_from_output), M read at C's offsets
STORE, RELU_OUT, TIMES_RELU_GRAD = 0, 1, 2
MR = 4  # rows of C per register block
KC = 64  # terms of a sum per chunk (see above)
_VECTOR_BYTES = 32  # 256-bit vectors (AVX2); LLVM splits them on narrower CPUs


def _micro_kernel(mr, nv, vector):
    """The intrinsic ``block(A, ao, sap, sak, B, bo, sbk, K, C, co, scp, go_on, last, M)`` for a block
    of ``mr`` rows by ``nv`` vectors (``vector``: of 256 bits, else of one value) of C; ``go_on``:
    continue the sums C holds instead of starting from 0; ``last``: what is stored (``product``'s
    ``epilogue``; M is read at C's offsets)."""

    @intrinsic
    def block(typingctx, A, ao, sap, sak, B, bo, sbk, K, C, co, scp, go_on, last, M):
        idx = types.intp
        sig = types.void(A, idx, idx, idx, B, idx, idx, idx, C, idx, idx, types.boolean, idx, M)

        def codegen(context, builder, signature, args):
            a_arr, ao_, sap_, sak_, b_arr, bo_, sbk_, k_, c_arr, co_, scp_, go_on_, last_, m_arr = args
            aty, bty, cty = signature.args[0], signature.args[4], signature.args[8]
            elem = context.get_value_type(aty.dtype)
            size = context.get_abi_sizeof(elem)
            lanes = _VECTOR_BYTES // size if vector else 1
            vty = ir.VectorType(elem, lanes) if vector else elem
            i64 = ir.IntType(64)
            name = "llvm.fmuladd." + (f"v{lanes}" if vector else "") + ("f32" if size == 4 else "f64")
            fmuladd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3), name)
            pa = cgutils.create_struct_proxy(aty)(context, builder, value=a_arr).data
            pb = cgutils.create_struct_proxy(bty)(context, builder, value=b_arr).data
            pc = cgutils.create_struct_proxy(cty)(context, builder, value=c_arr).data
            go_on_ = context.cast(builder, go_on_, signature.args[11], types.boolean)
            last_ = context.cast(builder, last_, signature.args[12], types.intp)
            pm = cgutils.create_struct_proxy(signature.args[13])(context, builder, value=m_arr).data

            def const(v):
                return ir.Constant(i64, v)

            def at(base, off):  # pointer to the vector (or value) at base[off]
                p = builder.gep(base, [off], inbounds=True)
                return builder.bitcast(p, vty.as_pointer()) if vector else p

            def c_at(p, v, base=pc):
                return at(base, builder.add(builder.add(co_, builder.mul(const(p), scp_)), const(v * lanes)))

            zero = ir.Constant(vty, [0.0] * lanes) if vector else ir.Constant(elem, 0.0)
            one = ir.Constant(vty, [1.0] * lanes) if vector else ir.Constant(elem, 1.0)
            relu = builder.icmp_signed("==", last_, const(RELU_OUT))
            times = builder.icmp_signed("==", last_, const(TIMES_RELU_GRAD))
            accs = [[cgutils.alloca_once(builder, vty) for _ in range(nv)] for _ in range(mr)]
            for p in range(mr):
                for v in range(nv):
                    # C's value when continuing (a select: C is read either way, its bits used only then)
                    builder.store(builder.select(go_on_, builder.load(c_at(p, v), align=size), zero), accs[p][v])
            with cgutils.for_range(builder, k_) as loop:
                k = loop.index
                brow = builder.add(bo_, builder.mul(k, sbk_))
                bv = [builder.load(at(pb, builder.add(brow, const(v * lanes))), align=size) for v in range(nv)]
                arow = builder.add(ao_, builder.mul(k, sak_))
                for p in range(mr):
                    x = builder.load(builder.gep(pa, [builder.add(arow, builder.mul(const(p), sap_))], inbounds=True))
                    if vector:  # broadcast
                        x = builder.insert_element(ir.Constant(vty, ir.Undefined), x, ir.Constant(ir.IntType(32), 0))
                        x = builder.shuffle_vector(x, ir.Constant(vty, ir.Undefined),
                                                   ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))
                    for v in range(nv):
                        builder.store(builder.call(fmuladd, [x, bv[v], builder.load(accs[p][v])]), accs[p][v])
            for p in range(mr):
                for v in range(nv):
                    total = builder.load(accs[p][v])
                    # selects, not a branch or a store skipped where relu keeps the value: LLVM made
                    # such an in-place relu a masked store, which is slow on AMD CPUs
                    rectified = builder.select(builder.fcmp_ordered("<=", total, zero), zero, total)
                    m = builder.load(c_at(p, v, pm), align=size)  # M is C where it is not used
                    gated = builder.fmul(total, builder.select(builder.fcmp_ordered("<=", m, zero), zero, one))
                    out = builder.select(relu, rectified, builder.select(times, gated, total))
                    builder.store(out, c_at(p, v), align=size)
            return context.get_dummy_value()
        return sig, codegen
    return block


# the blocks: rows × vectors of 256 bits, and 8 × 1 and 1 × 1 single values (the columns left over)
_B42, _B41 = _micro_kernel(MR, 2, True), _micro_kernel(MR, 1, True)
_B18, _B12, _B11 = _micro_kernel(1, 8, True), _micro_kernel(1, 2, True), _micro_kernel(1, 1, True)
_S8, _S1 = _micro_kernel(8, 1, False), _micro_kernel(1, 1, False)


def product(A, ao, sap, sak, B, bo, sbk, K, C, co, scp, P, Q, acc, epilogue, M):
    """``_product`` (below), called from Python; compiled code calls it through the overload after
    this, once per type of arrays: numba would otherwise compile ``_product`` again for every
    combination of constant arguments (strides of 1 and 0, False) at its call sites, ~0.7 s each."""
    return _product(A, ao, sap, sak, B, bo, sbk, K, C, co, scp, P, Q, acc, epilogue, M)


@overload(product)
def _product_for_types(A, ao, sap, sak, B, bo, sbk, K, C, co, scp, P, Q, acc, epilogue, M):
    # typed with the arguments' non-literal types (overload's prefer_literal=False)
    def call(A, ao, sap, sak, B, bo, sbk, K, C, co, scp, P, Q, acc, epilogue, M):
        _product(A, ao, sap, sak, B, bo, sbk, K, C, co, scp, P, Q, acc, epilogue, M)
    return call


@kernel
def _product(A, ao, sap, sak, B, bo, sbk, K, C, co, scp, P, Q, acc, epilogue, M):
    """C[co + p·scp + q] = (C's value if ``acc``, else nothing) + Σ_{k<K} A[ao + p·sap + k·sak]·B[bo + k·sbk + q]
    for p < P, q < Q; each sum over k in order with fused multiply-adds (module docstring). What is
    stored is ``epilogue`` (STORE, RELU_OUT or TIMES_RELU_GRAD, with M) of that sum."""
    width = 32 // C.itemsize  # lanes of a 256-bit vector
    nk = max(1, K // KC)
    kc = max(1, (K + nk - 1) // nk)  # chunks of (about) equal length
    qv = Q - Q % width  # the columns in whole vectors; the rest one value at a time
    for k0 in range(0, K, kc):
        kn = min(kc, K - k0)
        a0 = ao + k0 * sak
        b0 = bo + k0 * sbk
        go_on = acc or k0 > 0
        last = epilogue if k0 + kn >= K else STORE
        for p0 in range(0, P - P % MR, MR):
            for q0 in range(0, qv - qv % (2 * width), 2 * width):
                _B42(A, a0 + p0 * sap, sap, sak, B, b0 + q0, sbk, kn, C, co + p0 * scp + q0, scp, go_on, last, M)
            if qv % (2 * width) != 0:
                q0 = qv - width
                _B41(A, a0 + p0 * sap, sap, sak, B, b0 + q0, sbk, kn, C, co + p0 * scp + q0, scp, go_on, last, M)
        for p in range(P - P % MR, P):  # the rows left over: one at a time, as wide as the columns allow
            q0 = 0
            while q0 + 8 * width <= qv:
                _B18(A, a0 + p * sap, sap, sak, B, b0 + q0, sbk, kn, C, co + p * scp + q0, scp, go_on, last, M)
                q0 += 8 * width
            while q0 + 2 * width <= qv:
                _B12(A, a0 + p * sap, sap, sak, B, b0 + q0, sbk, kn, C, co + p * scp + q0, scp, go_on, last, M)
                q0 += 2 * width
            if q0 < qv:
                _B11(A, a0 + p * sap, sap, sak, B, b0 + q0, sbk, kn, C, co + p * scp + q0, scp, go_on, last, M)
        for q in range(qv, Q):
            for p0 in range(0, P - P % 8, 8):
                _S8(A, a0 + p0 * sap, sap, sak, B, b0 + q, sbk, kn, C, co + p0 * scp + q, scp, go_on, last, M)
            for p in range(P - P % 8, P):
                _S1(A, a0 + p * sap, sap, sak, B, b0 + q, sbk, kn, C, co + p * scp + q, scp, go_on, last, M)
