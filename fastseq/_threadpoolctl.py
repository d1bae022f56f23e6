"""fastseq's thread pool as a threadpoolctl library: ``threadpool_limits(1)`` caps it too.

``install()`` (run by ``import fastseq``) registers :class:`FastseqController` with
threadpoolctl: at once if threadpoolctl is already imported, else when it is, through a
one-shot import hook, so ``import fastseq`` never imports threadpoolctl itself (2-8 ms
here). The controller matches ``libfastseq.so`` by its prefix and its C symbols
``fastseq_version`` and the thread-count pair it calls.
"""
from __future__ import annotations

import ctypes
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading

__all__ = ["install"]

_lock = threading.Lock()
_registered = False


def _controller_class():
    from threadpoolctl import LibController

    class FastseqController(LibController):
        """threadpoolctl's view of libfastseq: ``user_api`` and ``internal_api`` "fastseq"."""

        user_api = "fastseq"
        internal_api = "fastseq"
        filename_prefixes = ("libfastseq",)
        check_symbols = ("fastseq_version", "fastseq_get_num_threads", "fastseq_set_num_threads")

        # The C ABI's thread count (fastseq/fastseq.h): fastseq's own pool, 1..4096.
        def get_num_threads(self):
            fn = self.dynlib.fastseq_get_num_threads
            fn.restype, fn.argtypes = ctypes.c_int, []
            return int(fn())

        def set_num_threads(self, num_threads):
            fn = self.dynlib.fastseq_set_num_threads
            fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_int]
            fn(min(max(1, int(num_threads)), 4096))

        def get_version(self):
            fn = self.dynlib.fastseq_version
            fn.restype, fn.argtypes = ctypes.c_char_p, []
            return fn().decode("ascii", "replace")

    return FastseqController


def _register() -> None:
    """Register the controller once, and load libfastseq so that threadpoolctl sees it."""
    global _registered
    with _lock:
        if _registered:
            return
        _registered = True
    try:
        import threadpoolctl

        if not hasattr(threadpoolctl, "register"):  # threadpoolctl < 3.2
            return
        try:
            from . import _core  # noqa: F401  (1 ms; threadpoolctl only lists loaded libraries)
        except ImportError:
            return
        from . import threads

        threads.get_num_threads()  # settle the default now, not over a limit set later
        threadpoolctl.register(_controller_class())
    except Exception:  # never let fastseq break threadpoolctl's import  # pragma: no cover
        pass


class _RegisterAfterExec:
    """Wraps threadpoolctl's loader: executes the module, then registers the controller;
    everything else (get_source, get_filename, ...) is the wrapped loader's."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _register()


class _Hook(importlib.abc.MetaPathFinder):
    """A one-shot finder for "threadpoolctl": it asks the other finders for the spec and
    wraps its loader, then leaves sys.meta_path."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "threadpoolctl":
            return None
        _remove_hook()
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None:
            for finder in sys.meta_path:
                find = getattr(finder, "find_spec", None)
                spec = find(fullname, path, target) if find else None
                if spec is not None:
                    break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _RegisterAfterExec(spec.loader)
        return spec


def _remove_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Hook)]


def install() -> None:
    """Register fastseq with threadpoolctl now if it is imported, else when it is."""
    if "threadpoolctl" in sys.modules:
        _register()
    elif not any(isinstance(f, _Hook) for f in sys.meta_path):
        sys.meta_path.insert(0, _Hook())
