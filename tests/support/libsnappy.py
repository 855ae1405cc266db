"""Google's C++ snappy (the library zflist links) through its C API, loaded with ctypes: the encoder
to compare ours with. Test and benchmark use only: zos-upgrade itself encodes with cramjam."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

__all__ = ["libsnappy_compress"]


def libsnappy_compress() -> Callable[[bytes], bytes] | None:
    """``compress(plain) -> raw snappy`` from the system's libsnappy, or None where it is absent."""
    name = ctypes.util.find_library("snappy")
    if not name:
        return None
    lib = ctypes.CDLL(name)
    lib.snappy_max_compressed_length.restype = ctypes.c_size_t
    lib.snappy_max_compressed_length.argtypes = [ctypes.c_size_t]
    lib.snappy_compress.restype = ctypes.c_int
    lib.snappy_compress.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                    ctypes.POINTER(ctypes.c_size_t)]

    def compress(plain: bytes) -> bytes:
        size = ctypes.c_size_t(lib.snappy_max_compressed_length(len(plain)))
        out = ctypes.create_string_buffer(size.value)
        if lib.snappy_compress(plain, len(plain), out, ctypes.byref(size)) != 0:
            raise RuntimeError("snappy_compress failed")
        return out.raw[: size.value]

    return compress
