"""JupyterLab 4 / Notebook 7 driven by headless Chromium (Playwright) for browser tests.

- ``jupyter_server(root, app="lab"|"notebook", env=...)``: a real server on 127.0.0.1 with its
  own token, port and isolated settings/config/runtime dirs; always stopped with its kernels.
- ``chromium()``: Debian's /usr/bin/chromium through Playwright (never ``playwright install``).
- page helpers: open a notebook, run all cells, restart the kernel, screenshots.
- ``requires_browser``: a skip marker for machines without Chromium, Playwright or Jupyter.

No fixed sleeps: every wait is on a selector, a page state or the server's HTTP API, bounded.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"  # gitignored
CHROMIUM = Path(os.environ.get("RESUMABLE_NB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SERVER_START_TIMEOUT = 60.0  # seconds; a healthy server answers /api/status in ~2 s
UI_TIMEOUT_MS = 30_000  # default for every Playwright wait
RUN_TIMEOUT_MS = 60_000  # one "Run All Cells"

App = Literal["lab", "notebook"]
# What the Lab settings dir holds so that no news / update toast covers the page.
_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
}


def unavailable() -> str | None:
    """Why browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} missing (run .ci/install-browser)"
    for module, pip_name in (("playwright", "playwright"), ("jupyterlab", "jupyterlab"),
                             ("notebook", "notebook"), ("jupyterlab_widgets", "ipywidgets")):
        if importlib.util.find_spec(module) is None:
            return f"python package {pip_name} missing (pip install -e '.[test]')"
    return None


_UNAVAILABLE = unavailable()
requires_browser = pytest.mark.skipif(_UNAVAILABLE is not None, reason=_UNAVAILABLE or "")


# ----------------------------------------------------------------------------------------- server


@dataclass
class Server:
    """A running Jupyter server: ``url`` ends with '/', ``token`` is needed by every request."""

    app: App
    url: str
    token: str
    root: Path
    log: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def page_url(self, path: str) -> str:
        """A browser URL for ``path`` (e.g. ``lab/tree/x.ipynb``) that logs in with the token."""
        return f"{self.url}{path.lstrip('/')}?token={self.token}"

    def notebook_url(self, name: str) -> str:
        """Where ``name`` (relative to the root dir) opens in this server's app."""
        prefix = "lab/tree" if self.app == "lab" else "notebooks"
        return self.page_url(f"{prefix}/{quote(name)}")

    def api(self, path: str, method: str = "GET", timeout: float = 5) -> Any:
        """Call the REST API (``api/...``) with the token; JSON back, or None for no body."""
        request = urllib.request.Request(f"{self.url}{path.lstrip('/')}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _state_dirs(base: Path) -> dict[str, str]:
    """Env vars that keep the server away from ~/.jupyter and ~/.local/share/jupyter."""
    dirs = {
        "JUPYTERLAB_SETTINGS_DIR": base / "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": base / "lab-workspaces",
        "JUPYTER_CONFIG_DIR": base / "config",
        "JUPYTER_DATA_DIR": base / "data",  # user-level only: the venv's share/jupyter still counts
        "JUPYTER_RUNTIME_DIR": base / "runtime",
    }
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for rel, settings in _SETTINGS.items():
        f = dirs["JUPYTERLAB_SETTINGS_DIR"] / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(settings))
    return {k: str(v) for k, v in dirs.items()}


def _start(app: App, root: Path, env: Mapping[str, str], state: Path, attempt: int) -> Server:
    port, token = _free_port(), secrets.token_hex(24)
    log = state / f"server-{attempt}.log"
    module = "jupyterlab" if app == "lab" else "notebook"  # == `jupyter lab` / `jupyter notebook`
    cmd = [sys.executable, "-m", module, "--no-browser", "--allow-root", "--ip=127.0.0.1",
           f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}"]
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, cwd=state, env=dict(env), stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Server(app, f"http://127.0.0.1:{port}/", token, root, log, process)


def _wait_ready(server: Server, timeout: float) -> str | None:
    """None once /api/status answers; else why not (the process exited, or time ran out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return f"exited with code {server.process.returncode}"
        try:
            server.api("api/status", timeout=2)
            return None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.1)  # polling interval, not a wait for a state
    return f"no answer on {server.url}api/status within {timeout:.0f} s"


def _descendants(pid: int) -> list[Any]:
    try:
        import psutil  # ipykernel's dependency

        return list(psutil.Process(pid).children(recursive=True))
    except Exception:
        return []


def _stop(server: Server) -> None:
    """Shut kernels down via the API, then SIGTERM the server (it also cleans up kernels), then
    SIGKILL whatever is left of it and of its kernels (they run in their own sessions)."""
    children = _descendants(server.process.pid)
    if server.process.poll() is None:
        with contextlib.suppress(Exception):
            for kernel in server.api("api/kernels"):
                server.api(f"api/kernels/{kernel['id']}", method="DELETE", timeout=10)
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)
    for child in children:
        with contextlib.suppress(Exception):
            if child.is_running():  # psutil checks the create time: no pid reuse mix-up
                child.kill()


@contextlib.contextmanager
def jupyter_server(root_dir: Path | str, app: App = "lab", env: Mapping[str, str] | None = None,
                   timeout: float = SERVER_START_TIMEOUT) -> Iterator[Server]:
    """Run ``jupyter lab`` (or Notebook 7's ``jupyter notebook``) on ``root_dir`` until the block
    ends. ``env`` is added to this process's environment (and to the isolated Jupyter dirs) for
    the server and its kernels. If the block raises, the server log is kept in test-artifacts/
    (always with RESUMABLE_NB_KEEP_SERVER_LOG=1)."""
    root = Path(root_dir).absolute()
    state = Path(tempfile.mkdtemp(prefix=f"rnb-{app}-"))
    full_env = {**os.environ, **_state_dirs(state), **(env or {})}
    full_env.pop("PYTEST_CURRENT_TEST", None)
    full_env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    server: Server | None = None
    failed = False
    try:
        for attempt in range(3):  # another process may take the free port before the server does
            server = _start(app, root, full_env, state, attempt)
            problem = _wait_ready(server, timeout)
            if problem is None:
                break
            _stop(server)
            log = server.log_text()
            if "already in use" in log and attempt < 2:
                continue
            raise RuntimeError(f"jupyter {app} did not start: {problem}\n--- server log ---\n"
                               f"{log[-8000:]}")
        assert server is not None
        yield server
    except BaseException:
        failed = True
        raise
    finally:
        if server is not None:
            _stop(server)
            if failed or os.environ.get("RESUMABLE_NB_KEEP_SERVER_LOG"):
                ARTIFACTS.mkdir(exist_ok=True)
                shutil.copy(server.log, ARTIFACTS / f"{app}-server.log")
        shutil.rmtree(state, ignore_errors=True)


# ---------------------------------------------------------------------------------------- browser


@contextlib.contextmanager
def chromium(*, extra_args: list[str] | None = None) -> Iterator[Browser]:
    """Debian's Chromium through Playwright. Each launch gets a fresh temporary profile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=[*CHROMIUM_ARGS, *(extra_args or [])])
        try:
            yield browser
        finally:
            browser.close()


# Installed in every page before the app's own scripts (``add_init_script``): a
# MutationObserver records every kernel status the notebook's execution indicator shows
# (``statuses``) and counts input prompts turning to [*] (``stars``). Waits then compare with a
# mark taken before an action, so a transient state (a cell that runs in 5 ms, a restart) is
# never missed and a state from before the action is never taken for its result.
_WATCH = r"""(() => {
  const w = window.__rnbWatch = {statuses: [], stars: 0};
  const IND = '.jp-Notebook-ExecutionIndicator';
  const note = el => w.statuses.push(el.getAttribute('data-status'));
  new MutationObserver(records => {
    for (const r of records) {
      if (r.type === 'attributes') {
        if (r.target.matches(IND)) { w.statuses.push(r.oldValue); note(r.target); }
        continue;
      }
      const el = r.target.nodeType === 1 ? r.target : r.target.parentElement;
      if (el && el.closest('.jp-InputPrompt')) {
        const texts = r.type === 'characterData' ? [r.target.data]
            : [...r.addedNodes].map(n => n.textContent);
        if (texts.some(t => t && t.includes('*'))) w.stars++;
      }
      for (const n of r.addedNodes || []) {
        if (n.nodeType !== 1) continue;
        if (n.matches(IND)) note(n);
        n.querySelectorAll(IND).forEach(note);
      }
    }
  }).observe(document, {subtree: true, childList: true, characterData: true,
      attributes: true, attributeOldValue: true, attributeFilter: ['data-status']});
})();"""


@contextlib.contextmanager
def new_page(browser: Browser, *, width: int = 1280, height: int = 900) -> Iterator[Page]:
    """A page in its own context (own cookies, storage) with bounded default timeouts and the
    status watcher. Browser console errors are kept on ``page.rnb_console`` for failure messages."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(UI_TIMEOUT_MS)
    context.add_init_script(_WATCH)
    page = context.new_page()
    messages: list[str] = []
    page.on("console", lambda m: messages.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
    page.rnb_console = messages  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        context.close()


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page PNG as test-artifacts/NAME.png and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# ------------------------------------------------------------------------------------ page helpers

# The current notebook's panel: Lab can hold several, hidden ones carry lm-mod-hidden.
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
INDICATOR = f"{PANEL} .jp-Notebook-ExecutionIndicator"
# Lab renders a traceback like stderr: one mime type for both.
STDERR_OUTPUT = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
# Statuses that only a connected (or connecting) kernel shows. Before a session exists the
# indicator already says "idle" (Notebook 7) or "initializing" then "idle" (Lab): idle alone
# does not mean a kernel is there, and running cells then opens Lab's kernel picker.
_KERNEL_STATUSES = ["connecting", "starting", "unknown", "busy", "restarting", "autorestarting"]

# Each returns false to keep waiting, or a string: "ok", or what went wrong.
_READY = """([mark, indicator, kernelStatuses]) => {
  const w = window.__rnbWatch;
  if (!w) return 'no status watcher in the page (open pages with new_page())';
  if (document.querySelector('.jp-Dialog')) return 'dialog';
  const ind = document.querySelector(indicator);
  return w.statuses.slice(mark).some(s => kernelStatuses.includes(s))
      && !!ind && ind.getAttribute('data-status') === 'idle' && 'ok';
}"""

# Done once the run started (a prompt turned to [*] after the mark), no prompt shows [*] any more
# and the kernel is idle. "ok" if every code cell then shows its count; a cell that raised
# stops "Run All": the cells after it go back to [ ] ("stopped").
_RUN_DONE = """([mark, panel, indicator]) => {
  const w = window.__rnbWatch;
  if (document.querySelector('.jp-Dialog')) return 'dialog';
  const root = document.querySelector(panel);
  const ind = document.querySelector(indicator);
  if (!root || !ind || w.stars <= mark || ind.getAttribute('data-status') !== 'idle') return false;
  const prompts = [...root.querySelectorAll('.jp-CodeCell .jp-InputArea .jp-InputPrompt')]
      .map(p => p.textContent);
  if (prompts.some(t => t.includes('*'))) return false;
  return prompts.every(t => /\\[\\d+\\]/.test(t)) ? 'ok' : 'stopped';
}"""


def _debug(page: Page) -> str:
    console = getattr(page, "rnb_console", [])
    dialogs = page.locator(".jp-Dialog").all_inner_texts()
    return (f"url={page.url}\ndialogs: {dialogs}\nbrowser console errors:\n"
            + "\n".join(console[-20:]))


def _wait(page: Page, what: str, script: str, arg: Any, timeout_ms: float) -> None:
    """Wait for ``script`` to return "ok"; on anything else or a timeout, screenshot and fail."""
    try:
        result = page.wait_for_function(script, arg=arg, timeout=timeout_ms).json_value()
    except Exception as exc:
        result = f"timed out: {exc}"
    if result == "ok":
        return
    shot = screenshot(page, f"failed-{what}")
    if result == "stopped":
        stderr = page.locator(f"{PANEL} {STDERR_OUTPUT}").all_inner_texts()
        result = "a cell failed and stopped the run; stderr outputs:\n" + "\n".join(stderr)
    raise AssertionError(f"{what}: {result}\n{_debug(page)}\nscreenshot: {shot}")


def _statuses_seen(page: Page) -> int:
    return int(page.evaluate("window.__rnbWatch.statuses.length"))


def open_notebook(page: Page, server: Server, name: str, timeout_ms: float = 60_000) -> None:
    """Open ``name`` in the server's app (Lab: /lab/tree/NAME, Notebook 7: /notebooks/NAME) and
    wait until its kernel has connected and is idle."""
    page.goto(server.notebook_url(name))
    if server.app == "lab":
        page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=timeout_ms)
    _wait(page, f"open {name} in {server.app}", _READY, [0, INDICATOR, _KERNEL_STATUSES], timeout_ms)


def menu(page: Page, top: str, item: str) -> None:
    """Click the menu bar's ``top`` menu, then its ``item``. A menu item's accessible name ends
    with its shortcut ("Restart Kernel… 0, 0"): match the label, then anything after a space."""
    page.get_by_role("menuitem", name=top, exact=True).click()
    label = re.compile(rf"^{re.escape(item)}(\s|$)")
    page.locator(".lm-Menu").get_by_role("menuitem", name=label).click()


def accept_dialog(page: Page, label: str) -> None:
    """Click the accept button of the dialog on screen, checking its label (its accessible name
    is longer: "Confirm Kernel Restart"), and wait until the dialog is gone."""
    dialog = page.locator(".jp-Dialog")
    dialog.locator("button.jp-mod-accept", has_text=label).click()
    dialog.wait_for(state="detached")


def run_all(page: Page, timeout_ms: float = RUN_TIMEOUT_MS) -> None:
    """Run > Run All Cells, then wait until every code cell shows its execution count and the
    kernel is idle. Fails as soon as the run stops at a cell that raised, with the traceback."""
    mark = int(page.evaluate("window.__rnbWatch.stars"))
    menu(page, "Run", "Run All Cells")
    _wait(page, "run all cells", _RUN_DONE, [mark, PANEL, INDICATOR], timeout_ms)


def restart_kernel(page: Page, timeout_ms: float = UI_TIMEOUT_MS) -> None:
    """Kernel > Restart Kernel…, accept the dialog, wait until the new kernel is idle."""
    mark = _statuses_seen(page)
    menu(page, "Kernel", "Restart Kernel…")
    accept_dialog(page, "Restart")
    _wait(page, "restart the kernel", _READY, [mark, INDICATOR, _KERNEL_STATUSES], timeout_ms)


def outputs(page: Page) -> Locator:
    """Every output of the current notebook."""
    return page.locator(f"{PANEL} .jp-OutputArea-output")


def output_with_text(page: Page, text: str) -> Locator:
    """The outputs that show ``text`` (wait on it with ``expect(...).to_be_visible()``)."""
    return outputs(page).filter(has_text=text)
