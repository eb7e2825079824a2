"""Which notebook is this, and where does its cache live?

The kernel learns its notebook from the frontend: VS Code sets ``__vsc_ipynb_file__``,
JupyterLab / Notebook 7 set ``__session__`` and ``JPY_SESSION_NAME`` (absolute, or relative to
the server root when a REST session was made without a name). nbclient and papermill say
nothing: the CLI tells the kernel through ``RESUMABLE_NB_NOTEBOOK``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import ENV

__all__ = ["DIR_NAME", "cache_root", "notebook_path"]

DIR_NAME = ".resumable_nb"


def notebook_path(user_ns: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Path | None:
    """The notebook the kernel runs, if anything says so (absolute when resolvable)."""
    env = os.environ if env is None else env
    candidates = [
        env.get(ENV["NOTEBOOK"]),
        user_ns.get("__vsc_ipynb_file__"),
        user_ns.get("__session__"),
        env.get("JPY_SESSION_NAME"),
    ]
    for candidate in candidates:
        if not isinstance(candidate, str) or not candidate.endswith(".ipynb"):
            continue
        path = Path(candidate)
        if path.is_absolute():
            return path
        # Relative to the server root, not to our cwd (the notebook's folder): keep the name.
        local = Path.cwd() / path.name
        return local
    return None


def cache_root(setting: str, user_ns: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Path:
    """The cache folder: the ``cache_dir`` setting, else ``$RESUMABLE_NB_DIR``, else
    ``.resumable_nb/`` next to the notebook, else in the working directory."""
    env = os.environ if env is None else env
    if setting:
        return Path(setting).expanduser().absolute()
    if env.get(ENV["DIR"]):
        return Path(env[ENV["DIR"]]).expanduser().absolute()
    nb = notebook_path(user_ns, env)
    base = nb.parent if nb is not None else Path.cwd()
    return base / DIR_NAME
