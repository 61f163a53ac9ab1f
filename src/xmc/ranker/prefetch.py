"""A software prefetch for numba kernels: ``prefetch(array, index)``.

The beam kernel is bound by memory latency, not arithmetic: each (feature, parent) group it reads
sits somewhere else in a layer of tens of megabytes, and each read waits on the one before it
(feature -> its groups -> a group's entries). Asking for the groups and entries a few steps ahead
lets those waits overlap (EURLEX57K's label layer: 1.6x faster, measured in BENCHMARKS.md).
numba exposes no prefetch and NumPy has no such operation, so this emits LLVM's ``llvm.prefetch``
intrinsic directly: a hint that never faults and changes no value.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_I32 = ir.IntType(32)


@intrinsic
def prefetch(typingctx, array, index):
    """Hint the CPU to load ``array[index]``'s cache line for reading (no bounds check: an address
    past the end is harmless, a prefetch never faults)."""
    if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        address = cgutils.get_item_pointer(context, builder, array_type, view, [args[1]], wraparound=False)
        address = builder.bitcast(address, ir.IntType(8).as_pointer())
        # The typed-pointer name; LLVM versions with opaque pointers accept it too (checked on LLVM 22).
        declared = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [address.type, _I32, _I32, _I32]), "llvm.prefetch.p0i8")
        # read (0), keep in all cache levels (locality 3), data cache (1)
        builder.call(declared, [address, ir.Constant(_I32, 0), ir.Constant(_I32, 3), ir.Constant(_I32, 1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen
