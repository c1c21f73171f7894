"""breakeven as threadpoolctl sees it: a controller of its own.

threadpoolctl finds thread pools by the shared libraries a process has
loaded.  breakeven's dispatch core (``breakeven/_core/engine.*.so``) exports two C
functions, ``breakeven_get_thread_limit`` and ``breakeven_set_thread_limit``,
that read and set a process-wide limit on the threads of every dispatched
call; the controller registered here through threadpoolctl's public
:func:`threadpoolctl.register` finds the core by them.  Then
``threadpool_info()`` lists breakeven (``user_api="breakeven"``), with its
limit, the profile in use and the OpenMP runtime, and
``threadpool_limits(n)`` (or ``threadpool_limits(n, user_api="breakeven")``)
caps breakeven's kernels, the built-in ones and every library's.

``import breakeven`` does not import threadpoolctl: if it is already
imported the controller is registered at once, else when it is.
"""

from __future__ import annotations

import sys

__all__ = ["install"]

USER_API = "breakeven"
# The exported C functions of the core, by which threadpoolctl tells it from
# other libraries' modules named engine.
GET, SET = "breakeven_get_thread_limit", "breakeven_set_thread_limit"


def _profile_words() -> str:
    from breakeven._core import tables

    # Without staleness: that looks the BLAS libraries up through
    # threadpoolctl, which is building this controller.
    return tables.profile_words(stale=False)


def _controller(threadpoolctl):
    class BreakevenController(threadpoolctl.LibController):
        """breakeven's dispatch: the threads of its calls, capped."""

        user_api = USER_API
        internal_api = USER_API
        filename_prefixes = ("engine.",)
        check_symbols = (GET, SET)

        def get_num_threads(self):
            """The limit; the usable CPUs when none is set (what a call may
            use at most, before OpenMP's own limit)."""
            from breakeven._core.engine import usable as usable_cpus

            limit = getattr(self.dynlib, GET)()
            return limit if limit > 0 else usable_cpus()

        def set_num_threads(self, num_threads):
            from breakeven._core.engine import usable as usable_cpus

            n = int(num_threads)
            # At or above the usable CPUs is no limit: restoring the value
            # get_num_threads gave must not leave one behind.
            getattr(self.dynlib, SET)(0 if n >= usable_cpus() else max(n, 1))

        def get_version(self):
            from breakeven._version import __version__

            return __version__

        def set_additional_attributes(self):
            from breakeven._core.openmp import OPENMP_RUNTIME

            self.openmp = OPENMP_RUNTIME
            try:  # never break threadpool_info() for everyone else
                self.profile = _profile_words()
            except Exception as exc:  # pragma: no cover - reported, not raised
                self.profile = f"unavailable ({type(exc).__name__}: {exc})"

    return BreakevenController


_installed = False


def _register(threadpoolctl) -> None:
    global _installed
    if _installed or not hasattr(threadpoolctl, "register"):
        return  # threadpoolctl older than its registration API
    _installed = True
    threadpoolctl.register(_controller(threadpoolctl))


# Why an import hook.  threadpoolctl lists a controller only once it is
# registered with threadpoolctl.register(), which needs threadpoolctl
# imported, and threadpoolctl offers no entry point that would let it find
# breakeven by itself.  Importing threadpoolctl at `import breakeven` costs
# milliseconds, a large share of breakeven's own import (`python -X
# importtime -c "import threadpoolctl"`), and registering only when
# breakeven first uses threadpoolctl would leave breakeven out of a
# threadpool_info() called before that.  So a one-shot hook: at the first
# import of threadpoolctl it registers the controller and removes itself;
# nothing else is ever looked at.
class _Loader:
    """Runs threadpoolctl's own loader, then registers the controller."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _register(module)

    def __getattr__(self, name):  # get_source, is_package, ...
        return getattr(self._loader, name)


class _Finder:
    """A one-shot import hook: the first import of threadpoolctl."""

    def find_spec(self, name, path=None, target=None):
        if name != "threadpoolctl":
            return None
        import importlib.util

        _remove_hook()
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


_hook = _Finder()


def _remove_hook() -> None:
    try:
        sys.meta_path.remove(_hook)
    except ValueError:
        pass


def install() -> None:
    """Register the controller now if threadpoolctl is imported, else at
    its import."""
    module = sys.modules.get("threadpoolctl")
    if module is not None:
        _register(module)
    elif _hook not in sys.meta_path:
        sys.meta_path.insert(0, _hook)
