"""The public surface: what ``import resumable_nb`` exposes, and nothing else by accident."""

from __future__ import annotations

import subprocess
import sys
import types

import resumable_nb
from resumable_nb import errors

PUBLIC = {
    "CorruptEntry", "RestoreError", "ResumableError", "ResumableWarning", "RunError",
    "StepUsageError", "StoreError", "Unfingerprintable", "Unstorable", "__version__",
    "fingerprint", "load_ipython_extension", "magics_of", "unload_ipython_extension",
}


def test_exported_names_are_sorted_and_exactly_the_public_api() -> None:
    assert resumable_nb.__all__ == sorted(resumable_nb.__all__)
    assert set(resumable_nb.__all__) == PUBLIC
    for name in resumable_nb.__all__:
        assert hasattr(resumable_nb, name), name
    helpers = {"annotations", "Any", "TYPE_CHECKING"}  # from __future__ and typing, not API
    stray = {n for n, v in vars(resumable_nb).items()
             if not n.startswith("_") and not isinstance(v, types.ModuleType)} - PUBLIC - helpers
    assert stray == set()


def test_every_error_is_a_resumable_error() -> None:
    from resumable_nb.errors import RunError

    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and not issubclass(obj, Warning):
            assert issubclass(obj, resumable_nb.ResumableError), name
    assert issubclass(RunError, resumable_nb.ResumableError)
    assert issubclass(resumable_nb.ResumableWarning, UserWarning)


def test_importing_the_package_stays_cheap() -> None:
    """``%load_ext`` must not pull in IPython widgets, numpy, pandas or nbclient."""
    code = ("import sys, resumable_nb; heavy = {'ipywidgets', 'numpy', 'pandas', 'nbclient', "
            "'nbformat', 'obstore', 'diskcache'} & set(sys.modules); print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
