"""The hidden cells the CLI runs in a headless kernel, run here in a real InteractiveShell (the
whole protocol, through real kernels, is in test_cli.py)."""

from __future__ import annotations

import pytest

from resumable_nb import magics_of
from resumable_nb.kernelside import kernel_code, read_report
from tests.conftest import Shell


def test_kernel_code_calls_one_kernel_function_with_literals() -> None:
    assert kernel_code("kernel_finish", "completed") == (
        "__import__('resumable_nb.kernelside', fromlist=['kernel_finish'])"
        ".kernel_finish(get_ipython(), 'completed')")
    with pytest.raises(ValueError, match="not a kernel-side function"):
        kernel_code("system", "rm -rf /")


def test_setup_reports_and_finish_ends_the_run(shell: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run("%%step a\nx = 1")
    capsys.readouterr()
    shell.run(kernel_code("kernel_setup", None))
    report = read_report(capsys.readouterr().out)
    assert report["held"] is False and report["restored"] == [] and report["error"] == ""
    magics = magics_of(shell.ip)
    assert magics is not None
    journal = magics.session.journal()
    assert journal is not None and journal.run_id is not None
    run = journal.run_id
    shell.run(kernel_code("kernel_rebind"))  # nothing was restored: nothing to do
    shell.run(kernel_code("kernel_finish", "completed"))
    assert magics.session._runs(journal)[run].state == "completed"


def test_a_report_is_read_from_noisy_output() -> None:
    assert read_report("hello\n@@resumable-nb-report@@ {\"run\": \"r1\"}\nbye") == {"run": "r1"}
    assert read_report("no report") == {}
