"""Where the C ABI lives: ``get_include()`` (the directory holding ``fastseq/fastseq.h``) and
``get_library()`` (the path of ``libfastseq.so``), for C programs and for ``fastseq.capi``.

Two layouts: an installed wheel keeps both in the package (``fastseq/include``,
``fastseq/libfastseq.so``); the in-place developer build (``tools/dev-build.sh``) copies
the library into the package and leaves the header in the source tree (``csrc/include``).
"""
from __future__ import annotations

import os
import sys

__all__ = ["get_include", "get_library"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_HEADER = os.path.join("fastseq", "fastseq.h")


def get_include() -> str:
    """The include directory of fastseq's C ABI: compile with ``-I`` it and
    ``#include <fastseq/fastseq.h>``.

    Raises
    ------
    FileNotFoundError
        Neither the installed header nor the source tree's is there.
    """
    candidates = (
        os.path.join(_PACKAGE, "include"),  # installed wheel
        os.path.join(os.path.dirname(_PACKAGE), "csrc", "include"),  # source tree
    )
    for directory in candidates:
        if os.path.isfile(os.path.join(directory, _HEADER)):
            return directory
    raise FileNotFoundError(
        f"fastseq's C header {_HEADER} is in none of {list(candidates)}; "
        "reinstall fastseq, or build in place with tools/dev-build.sh"
    )


def get_library() -> str:
    """The path of ``libfastseq.so``: the kernels and the C ABI, without Python. Link it by
    this path (or ``-L<its directory> -lfastseq``) with an rpath to its directory.

    Raises
    ------
    FileNotFoundError
        The library was not built or installed next to the package.
    """
    name = "libfastseq.dylib" if sys.platform == "darwin" else "libfastseq.so"
    path = os.path.join(_PACKAGE, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} does not exist; reinstall fastseq, or build in place with tools/dev-build.sh"
        )
    return path
