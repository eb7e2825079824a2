"""Shared fixtures: a real InteractiveShell with the extension loaded on a temp cache dir,
and real ipykernel kernels (jupyter_client) on a shared cache dir."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from resumable_nb import magics_of
from resumable_nb.runner import StepResult
from tests.kernels import Kernel


@pytest.fixture(scope="session", autouse=True)
def _key_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Tests never touch ~/.config: one HMAC key for the session, shared with kernels."""
    key = tmp_path_factory.mktemp("key") / "hmac.key"
    old = os.environ.get("RESUMABLE_NB_KEY_FILE")
    os.environ["RESUMABLE_NB_KEY_FILE"] = str(key)
    yield key
    if old is None:
        os.environ.pop("RESUMABLE_NB_KEY_FILE", None)
    else:
        os.environ["RESUMABLE_NB_KEY_FILE"] = old


class Shell:
    """A real InteractiveShell with helpers to run cells and read what happened."""

    def __init__(self, ip: InteractiveShell, cache: Path, log: Path) -> None:
        self.ip = ip
        self.cache = cache
        self.log = log

    def run(self, cell: str, *, ok: bool = True) -> Any:
        result = self.ip.run_cell(cell)
        if ok and not result.success:
            raise AssertionError(f"cell failed: {result.error_in_exec or result.error_before_exec!r}")
        return result

    @property
    def ns(self) -> dict[str, Any]:
        return self.ip.user_ns

    @property
    def magics(self) -> Any:
        return magics_of(self.ip)

    @property
    def last(self) -> StepResult:
        return self.magics.runner.history[-1]

    def count(self, tag: str) -> int:
        """How many times a cell logged ``tag`` via ``mark(tag)``."""
        if not self.log.exists():
            return 0
        return self.log.read_text().split().count(tag)

    def fresh(self) -> None:
        """Forget the namespace (as a new kernel would) but keep the cache."""
        self.ip.reset(new_session=False)
        self.ip.run_cell("%reload_ext resumable_nb")
        self.ip.run_cell(f"%config ResumableNB.cache_dir = {str(self.cache)!r}")
        self.ip.user_ns["mark"] = _marker(self.log)
        self.ip.user_ns_hidden["mark"] = self.ip.user_ns["mark"]


def _marker(log: Path) -> Any:
    def mark(tag: str) -> None:
        with open(log, "a") as f:
            f.write(tag + "\n")

    return mark


@pytest.fixture
def shell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Shell]:
    ip = InteractiveShell.instance()
    ip.colors = "nocolor" if hasattr(ip, "colors") else None  # plain tracebacks
    sh = Shell(ip, tmp_path / "cache", tmp_path / "executions.log")
    ip.run_cell("%load_ext resumable_nb")
    sh.fresh()
    yield sh
    ip.run_cell("%unload_ext resumable_nb")
    ip.reset(new_session=False)


class Kernels:
    """Starts real kernels on one shared cache dir; each gets the extension and a ``mark(tag)``
    helper that logs executions, which ``count(tag)`` reads back."""

    def __init__(self, folder: Path, key_file: Path) -> None:
        self.folder = folder
        self.key_file = key_file
        self.log = folder / "executions.log"
        self.started: list[Kernel] = []

    def __call__(self, **env: str) -> Kernel:
        k = Kernel(self.folder, {"RESUMABLE_NB_DIR": str(self.folder / "cache"),
                                 "RESUMABLE_NB_KEY_FILE": str(self.key_file),
                                 "RESUMABLE_NB_NOTEBOOK": str(self.folder / "pipeline.ipynb"), **env})
        self.started.append(k)
        k.ok("%load_ext resumable_nb")
        setup = k.ok(f"def mark(tag, _log={str(self.log)!r}):\n    open(_log, 'a').write(tag + '\\n')")
        k.setup_stderr = setup.stderr  # type: ignore[attr-defined]  # a plain cell: journaled
        return k

    def count(self, tag: str) -> int:
        return self.log.read_text().split().count(tag) if self.log.exists() else 0

    def close(self) -> None:
        for k in self.started:
            try:
                k.close()
            except Exception:
                pass


@pytest.fixture
def start(tmp_path: Path, _key_file: Path) -> Iterator[Kernels]:
    kernels = Kernels(tmp_path, _key_file)
    yield kernels
    kernels.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's Chromium through Playwright (tests/browser.py); one per test."""
    from tests.browser import chromium

    with chromium() as b:
        yield b


@pytest.fixture
def local_modules(tmp_path: Path) -> Iterator[Path]:
    """A folder on sys.path for modules 'next to the notebook'; cleaned from sys.modules."""
    folder = tmp_path / "nbdir"
    folder.mkdir()
    sys.path.insert(0, str(folder))
    before = set(sys.modules)
    yield folder
    sys.path.remove(str(folder))
    for name in set(sys.modules) - before:
        sys.modules.pop(name, None)


def forget_modules(*names: str) -> None:
    """Unload ``names`` so that the next import reads their files again."""
    for name in names:
        sys.modules.pop(name, None)
    importlib.invalidate_caches()


def edit_manifest(root: Path, key: str, edit: Callable[[dict[str, Any]], None]) -> None:
    """Change the manifest stored under ``key`` in the cache at ``root`` behind the store's
    back, keeping its old signature (what someone without the key can do)."""
    import diskcache

    index = diskcache.Cache(str(root / "index"))
    record = json.loads(index.get(key))
    manifest = json.loads(record["m"])
    edit(manifest)
    record["m"] = json.dumps(manifest, sort_keys=True)
    index.set(key, json.dumps(record).encode())
    index.close()
