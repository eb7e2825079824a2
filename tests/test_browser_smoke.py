"""Smoke test of the browser infrastructure: the extension and an ipywidgets widget in
JupyterLab 4 (run, restart, run again from the cache) and in Notebook 7, in headless Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import nbformat
import pytest

from tests.browser import (
    PANEL,
    jupyter_server,
    new_page,
    open_notebook,
    output_with_text,
    outputs,
    requires_browser,
    restart_kernel,
    run_all,
    screenshot,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [pytest.mark.browser, requires_browser]

NAME = "smoke.ipynb"
WIDGET = ".widget-button.rnb-smoke"  # the ipywidgets view, not the text repr of the Button


def _notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext resumable_nb"),
        nbformat.v4.new_code_cell('import ipywidgets as w\n'
                                  'w.Button(description="Hello widget").add_class("rnb-smoke")'),
        nbformat.v4.new_code_cell('%%step s\nprint("step output 42")'),
    ]
    nbformat.write(nb, path)


def test_lab_and_notebook7_run_restart_replay(tmp_path: Path, _key_file: Path,
                                              browser: Browser) -> None:
    from playwright.sync_api import expect

    root = tmp_path / "root"
    root.mkdir()
    _notebook(root / NAME)
    env = {"RESUMABLE_NB_DIR": str(tmp_path / "cache"), "RESUMABLE_NB_KEY_FILE": str(_key_file)}

    with jupyter_server(root, "lab", env=env) as server, new_page(browser) as page:
        open_notebook(page, server, NAME)
        run_all(page)
        prompts = page.locator(f"{PANEL} .jp-InputPrompt")
        expect(prompts).to_have_text(["[1]:", "[2]:", "[3]:"])
        expect(output_with_text(page, "step output 42")).to_be_visible()
        expect(page.locator(WIDGET)).to_be_visible()  # ipywidgets' Lab frontend rendered it
        expect(page.locator(WIDGET)).to_have_text("Hello widget")
        expect(output_with_text(page, "restored from cache")).to_have_count(0)
        screenshot(page, "smoke-lab-first-run")

        restart_kernel(page)
        run_all(page)
        expect(prompts.first).to_have_text("[1]:")  # a new kernel: counts start again
        expect(output_with_text(page, "restored from cache")).to_be_visible()
        expect(output_with_text(page, "step output 42")).to_be_visible()
        expect(page.locator(WIDGET)).to_be_visible()
        screenshot(page, "smoke-lab-after-restart")

    with jupyter_server(root, "notebook", env=env) as server, new_page(browser) as page:
        open_notebook(page, server, NAME)
        run_all(page)
        expect(output_with_text(page, "step output 42")).to_be_visible()
        expect(output_with_text(page, "restored from cache")).to_be_visible()
        expect(page.locator(WIDGET)).to_be_visible()
        expect(outputs(page).filter(has_text="Error")).to_have_count(0)
        screenshot(page, "smoke-notebook7")
