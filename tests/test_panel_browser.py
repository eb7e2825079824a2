"""The run panel in a real JupyterLab (and Notebook 7) in headless Chromium: rows and states,
Replay from a step, then a kernel restart from Lab's menu and %resume."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import nbformat
import pytest

from tests.browser import (
    ARTIFACTS,
    PANEL,
    jupyter_server,
    new_page,
    open_notebook,
    requires_browser,
    restart_kernel,
    run_all,
    screenshot,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

pytestmark = [pytest.mark.browser, requires_browser]

NAME = "pipeline.ipynb"
STEPS = ["load", "double", "total", "report"]
CELLS = [
    "%load_ext resumable_nb",
    "%%step load\nnums = list(range(10))",
    # A fresh token on every real run: replaying 'double' changes what the next steps read.
    "%%step double\nimport uuid\ndoubled = [n * 2 for n in nums]\ntoken = uuid.uuid4().hex",
    "%%step total\ntotal = (sum(doubled), token)",
    "%%step report\nprint(f'total = {total[0]}')",
    "%steps",
]


def _notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nbformat.write(nb, str(path))


def _panel(page: Page) -> Locator:
    return page.locator(f"{PANEL} .rnb-panel").last


def _row(panel: Locator, step: str) -> Locator:
    return panel.locator(f"tr.rnb-row[data-step='{step}']")


def _shot(element: Locator, name: str) -> None:
    """A screenshot of just the panel, as test-artifacts/NAME.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    element.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _run_new_cell(page: Page, code: str) -> None:
    """Add a cell at the end of the notebook, type ``code`` and run it (Shift+Enter)."""
    cells = page.locator(f"{PANEL} .jp-Cell")
    cells.last.locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    editor = page.locator(f"{PANEL} .jp-Cell").last.locator(".cm-content")
    editor.click()
    page.keyboard.type(code)
    page.keyboard.press("Shift+Enter")


def test_panel_rows_replay_and_resume_after_a_restart(tmp_path: Path, _key_file: Path,
                                                       browser: Browser) -> None:
    from playwright.sync_api import expect

    root = tmp_path / "root"
    root.mkdir()
    _notebook(root / NAME)
    env = {"RESUMABLE_NB_DIR": str(tmp_path / "cache"), "RESUMABLE_NB_KEY_FILE": str(_key_file)}

    with jupyter_server(root, "lab", env=env) as server, new_page(browser) as page:
        open_notebook(page, server, NAME)
        run_all(page)
        panel = _panel(page)
        expect(panel).to_be_visible()
        rows = panel.locator("tr.rnb-row")
        expect(rows).to_have_count(4)
        expect(rows.locator(".rnb-name")).to_have_text(STEPS)
        for step in STEPS:
            expect(_row(panel, step).locator(".rnb-state")).to_have_text("ran")
            expect(_row(panel, step).locator(".rnb-attempts")).to_have_text("1")
        expect(panel.locator(".rnb-run-state")).to_have_text("running")
        for label in ("Resume", "Replay from step", "Re-run step", "Clear step cache", "Refresh"):
            expect(panel.get_by_role("button", name=label)).to_be_visible()
        panel.scroll_into_view_if_needed()
        _shot(panel, "panel-first-run")

        # Replay from step 2: it asks first, then 2, 3 and 4 run again (3 and 4 read the new token).
        panel.locator(".rnb-step-choice select").select_option("double")
        panel.get_by_role("button", name="Replay from step").click()
        expect(panel.locator(".rnb-question")).to_contain_text("Replay from 'double'?")
        panel.get_by_role("button", name="Yes, do it").click()
        for step in STEPS[1:]:
            expect(_row(panel, step).locator(".rnb-attempts")).to_have_text("2", timeout=60_000)
            expect(_row(panel, step).locator(".rnb-state")).to_have_text("ran")
        expect(_row(panel, "load").locator(".rnb-attempts")).to_have_text("1")
        expect(_row(panel, "double").locator(".rnb-reason")).to_have_text("re-run on request (--force)")
        expect(_row(panel, "total").locator(".rnb-reason")).to_have_text("input token changed")
        expect(panel.locator(".rnb-output")).to_contain_text("total = 90")
        _shot(panel, "panel-after-replay")

        # A kernel restart from Lab's menu, then %load_ext and %resume.
        restart_kernel(page)
        page.locator(f"{PANEL} .jp-Cell").first.locator(".jp-InputPrompt").click()
        page.keyboard.press("Shift+Enter")  # %load_ext resumable_nb
        _run_new_cell(page, "%resume")
        resumed = _panel(page)
        expect(resumed.locator("tr.rnb-row")).to_have_count(4, timeout=60_000)
        for step in STEPS:
            expect(_row(resumed, step).locator(".rnb-state")).to_have_text("restored by resume")
        expect(resumed.locator(".rnb-header")).to_contain_text("resumed from")
        expect(page.locator(f"{PANEL} .jp-OutputArea-output", has_text="Restored 4 steps")).to_be_visible()
        resumed.scroll_into_view_if_needed()
        _shot(resumed, "panel-resumed")

    # Notebook 7, once: the same notebook renders the panel there too.
    with jupyter_server(root, "notebook", env=env) as server, new_page(browser) as page:
        open_notebook(page, server, NAME)
        run_all(page)
        panel = _panel(page)
        expect(panel.locator("tr.rnb-row")).to_have_count(4)
        expect(_row(panel, "load").locator(".rnb-state")).to_have_text("restored from cache")
        screenshot(page, "panel-notebook7")
