"""Every environment variable resumable_nb reads, named once.

The traitlets settings (``%config ResumableNB.<name>``) live on the magics class; these are
the process-wide equivalents, read by the kernel, the CLI and the tests alike.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV", "env_flag", "env_off", "env_path"]

ENV = {
    "DIR": "RESUMABLE_NB_DIR",  # the cache folder
    "KEY_FILE": "RESUMABLE_NB_KEY_FILE",  # the secret that signs entries and journal records
    "NOTEBOOK": "RESUMABLE_NB_NOTEBOOK",  # the notebook a headless kernel runs (set by the CLI)
    "HEADLESS": "RESUMABLE_NB_HEADLESS",  # show the text table, never the widget
    "FAULT": "RESUMABLE_NB_FAULT",  # test-only fault injection (see _faults)
    "ENABLED": "RESUMABLE_NB_ENABLED",  # 0/false/no: every %%step runs as a plain cell
    "STORE": "RESUMABLE_NB_STORE",  # the team store: s3://BUCKET/PREFIX (docs/team.md)
    "STORE_TIMEOUT": "RESUMABLE_NB_STORE_TIMEOUT",  # seconds per team-store request (default 5)
    "PROJECT": "RESUMABLE_NB_PROJECT",  # the project a notebook belongs to in the team store
    "MAX_SIZE": "RESUMABLE_NB_MAX_SIZE",  # bound on the local cache folder ("20GB")
}


def env_path(name: str) -> Path | None:
    """The path in ``RESUMABLE_NB_<name>``, expanded and absolute, or None when unset/empty."""
    value = os.environ.get(ENV[name])
    return Path(value).expanduser().absolute() if value else None


def env_flag(name: str) -> bool:
    """``RESUMABLE_NB_<name>`` is set to something other than empty, ``0``, ``false`` or ``no``."""
    return os.environ.get(ENV[name], "").strip().lower() not in ("", "0", "false", "no")


def env_off(name: str) -> bool:
    """``RESUMABLE_NB_<name>`` is explicitly ``0``, ``false``, ``no`` or ``off`` (unset: not off)."""
    return os.environ.get(ENV[name], "").strip().lower() in ("0", "false", "no", "off")
