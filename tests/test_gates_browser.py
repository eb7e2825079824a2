"""The panel's gate buttons and pipeline graph in a real JupyterLab in headless Chromium: a run
made by ``resumable-nb run`` waits at a gate; the panel shows the gate with Approve / Reject,
the graph's nodes, edges and state colours; a click on a node chooses it for Re-run; Approve
records the decision and the next ``resumable-nb run`` goes on."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from resumable_nb.states import COLORS
from tests.browser import ARTIFACTS, PANEL, jupyter_server, new_page, open_notebook, requires_browser
from tests.test_cli import cli, counts, marker_cell, write_notebook

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [pytest.mark.browser, requires_browser]


def test_gate_buttons_and_the_graph(tmp_path: Path, _key_file: Path, browser: Browser) -> None:
    from playwright.sync_api import expect

    root, cache, log = tmp_path / "root", tmp_path / "cache", tmp_path / "executions.log"
    root.mkdir()
    nb = write_notebook(root / "gated.ipynb", [
        "%load_ext resumable_nb\n%steps",
        marker_cell(log),
        "%%step load\nmark('load')\nraw = [1, 2, 3]",
        "%%step double\nmark('double')\ndoubled = [2 * r for r in raw]",
        "%gate review --ask 'Numbers look right?'",
        "%%step publish\nmark('publish')\ntotal = sum(doubled)",
    ])
    first = cli("run", nb, cache=cache, key=_key_file)
    assert first.returncode == 3, first.stderr
    env = {"RESUMABLE_NB_DIR": str(cache), "RESUMABLE_NB_KEY_FILE": str(_key_file)}

    with jupyter_server(root, "lab", env=env) as server, new_page(browser) as page:
        open_notebook(page, server, nb.name)
        page.locator(f"{PANEL} .jp-Cell").first.locator(".jp-InputPrompt").click()
        page.keyboard.press("Shift+Enter")  # %load_ext + %steps: the panel of the waiting run
        panel = page.locator(f"{PANEL} .rnb-panel").last
        expect(panel.locator(".rnb-gate")).to_contain_text("waiting for approval at gate review",
                                                           timeout=60_000)
        expect(panel.locator(".rnb-gate")).to_contain_text("Numbers look right?")
        for name in ("Approve", "Reject"):
            expect(panel.get_by_role("button", name=name)).to_be_visible()

        graph = panel.locator("svg.rnb-graph")
        expect(graph.locator("g.rnb-node")).to_have_count(4)
        expected = {"load": "ran", "double": "ran", "review": "waiting", "publish": "not_run"}
        for step, state in expected.items():
            node = graph.locator(f"g.rnb-node[data-step='{step}']")
            expect(node).to_have_attribute("data-state", state)
            expect(node.locator("rect")).to_have_attribute("fill", COLORS[state])  # type: ignore[index]
        # a data edge (double read what load wrote); the gate's order edges (publish has not
        # run yet, so the journal does not know what it reads)
        expect(graph.locator("g.rnb-edge")).to_have_count(3)
        expect(graph.locator("g.rnb-edge-data[data-source='load'][data-target='double']")).to_have_attribute(
            "data-names", "raw")
        expect(graph.locator("g.rnb-edge-order")).to_have_count(2)
        ARTIFACTS.mkdir(exist_ok=True)
        panel.screenshot(path=str(ARTIFACTS / "panel-gate-graph.png"))

        # A click on a node chooses it: Re-run then asks about that step (the kernel saw it).
        graph.locator("g.rnb-node[data-step='load']").click()
        expect(panel.locator(".rnb-step-choice select")).to_have_value("load")
        panel.get_by_role("button", name="Re-run step").click()
        expect(panel.locator(".rnb-question")).to_contain_text("Re-run 'load'")
        panel.get_by_role("button", name="Cancel").click()

        panel.locator(".rnb-gate-note input").fill("looks right")
        panel.get_by_role("button", name="Approve").click()
        expect(panel.locator(".rnb-output")).to_contain_text("gate 'review' approved by")
        expect(panel.locator(".rnb-gate-box")).to_be_hidden()
        expect(graph.locator("g.rnb-node[data-step='review']")).to_have_attribute("data-state", "ran")

    done = cli("run", nb, cache=cache, key=_key_file)
    assert done.returncode == 0, done.stderr
    assert counts(log) == {"load": 1, "double": 1, "publish": 1}
