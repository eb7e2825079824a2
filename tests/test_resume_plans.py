"""What ``%resume`` and ``%replay`` decide, without a shell: ``restore_state``, ``plan_resume``
and ``plan_replay`` over a real ``Store`` on a temp dir and real ``Journal`` events."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

from resumable_nb.errors import StepUsageError
from resumable_nb.journal import Journal, RunView, StepView, chain
from resumable_nb.resume import Cell, parse_cells, plan_replay, plan_resume, restore_state
from resumable_nb.store import Store


@dataclass
class Kernel:
    """One run of a notebook: steps are stored in the real store and journaled, as the
    runner does, but their bodies are not executed (the values are given)."""

    store: Store
    journal: Journal

    def step(self, name: str, outputs: dict[str, Any], *, deleted: tuple[str, ...] = (),
             inputs: tuple[str, ...] = (), source: str = "", duration: float = 1.0) -> str:
        key = f"step-{name}-{len(self.journal.read()[0])}-{sorted(outputs.items())!r}"
        self.store.put(key, name, {"outputs": outputs, "deleted": deleted, "events": [], "result": None},
                       {}, outputs=tuple(outputs), deleted=deleted, duration=duration)
        self.journal.step_started(name, key, source or f"# {name}")
        self.journal.step_finished(name, "ran", key=key, duration=duration,
                                   outputs={n: 10 for n in outputs}, deleted=deleted,
                                   inputs={n: "0" * 16 for n in inputs})
        return key

    def fail(self, name: str) -> None:
        self.journal.step_started(name, None, f"# {name}")
        self.journal.step_finished(name, "failed", key=None, duration=0.5, error="ValueError: bad")

    def runs(self) -> dict[str, RunView]:
        return self.journal.read()[0]

    def steps(self) -> list[StepView]:
        run = self.journal.run_id
        assert run is not None
        return chain(self.runs(), run)


@pytest.fixture
def kernel(tmp_path: Path, _key_file: Path) -> Iterator[Kernel]:
    store = Store(tmp_path / "cache", _key_file)
    assert store.dir is not None
    journal = Journal(store.dir, str(tmp_path / "nb.ipynb"), key=store.journal_key)
    assert journal.acquire()
    journal.start_run()
    yield Kernel(store, journal)
    journal.release()
    store.close()


def _cells(*sources: str) -> list[Cell]:
    return parse_cells(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources]))


# -- restore_state ------------------------------------------------------------------------------
def test_restore_takes_the_last_writer_of_every_name(kernel: Kernel) -> None:
    kernel.step("a", {"x": 1, "tmp": "t"})
    kernel.step("b", {"y": 2}, deleted=("tmp",), inputs=("x",))
    kernel.step("c", {"x": 10})
    restored = restore_state(kernel.steps(), kernel.store, {})
    assert restored.values == {"x": 10, "y": 2} and restored.deleted == {"tmp"}
    assert [s.name for s in restored.steps] == ["a", "b", "c"] and restored.stopped_at is None
    read = [s.key for s in kernel.steps() if s.name in ("b", "c")]  # a: overwritten, deleted
    assert restored.nbytes == sum(kernel.store.get(k).size for k in read if k)
    assert restored.saved == 3.0


def test_restore_loads_only_the_last_writers(kernel: Kernel) -> None:
    first = kernel.step("a", {"x": 1})
    kernel.step("b", {"x": 2})
    kernel.store.delete(first)  # a was overwritten: its entry is not needed
    restored = restore_state(kernel.steps(), kernel.store, {})
    assert restored.values == {"x": 2} and restored.stopped_at is None


def test_an_entry_that_is_gone_cuts_the_state_just_before_it(kernel: Kernel) -> None:
    kernel.step("a", {"x": 1})
    gone = kernel.step("b", {"y": 2})
    kernel.step("c", {"z": 3})
    kernel.store.delete(gone)
    namespace: dict[str, Any] = {"untouched": True}
    restored = restore_state(kernel.steps(), kernel.store, namespace)
    assert restored.values == {"x": 1} and [s.name for s in restored.steps] == ["a"]
    assert restored.stopped_at is not None and restored.stopped_at.name == "b"
    assert "gone" in restored.why
    assert namespace == {"untouched": True}, "restore_state reads; bind writes"


# -- plan_resume --------------------------------------------------------------------------------
def test_resume_plan_names_the_failed_step_and_what_is_left_in_notebook_order(kernel: Kernel) -> None:
    kernel.step("one", {"a": 1})
    kernel.fail("two")
    run = kernel.journal.run_id
    kernel.journal.end_run("failed")
    runs = kernel.runs()
    assert run is not None
    cells = _cells("import math", "%%step one\na = 1", "%%step two\nb = a / 0", "%%step three --force\nc = 3")
    plan = plan_resume(runs, runs[run], kernel.store, {}, cells)
    assert plan.restored.values == {"a": 1}
    assert [(s.name, s.status) for s in plan.interrupted] == [("two", "failed")]
    assert plan.remaining == ["two", "three"]
    without_notebook = plan_resume(runs, runs[run], kernel.store, {}, None)
    assert without_notebook.remaining == ["two"], "only the run's own steps are known"


def test_resume_plan_follows_the_runs_it_resumed(kernel: Kernel) -> None:
    kernel.step("one", {"a": 1})
    first = kernel.journal.run_id
    kernel.journal.end_run("completed")
    assert first is not None
    second = kernel.journal.start_run(resumed_from=first)
    kernel.step("two", {"b": 2})
    runs = kernel.runs()
    plan = plan_resume(runs, runs[second], kernel.store, {}, None)
    assert plan.restored.values == {"a": 1, "b": 2} and plan.remaining == []


# -- plan_replay --------------------------------------------------------------------------------
def _has_entry(store: Store, asked: list[str]) -> Any:
    def has_entry(key: str) -> bool:
        asked.append(key)
        return store.get(key) is not None

    return has_entry


def test_replay_plan_verdicts(kernel: Kernel) -> None:
    kernel.step("load", {"rows": [3, 1, 2]})
    kernel.step("sort", {"rows": [1, 2, 3], "first": 1}, inputs=("rows",))
    kernel.step("other", {"const": 42})
    kernel.step("report", {"msg": "first=1"}, inputs=("first",))
    gone = kernel.step("late", {"z": 0})
    kernel.store.delete(gone)
    cells = _cells("%%step load\nrows = [3, 1, 2]", "%%step sort\nrows.sort()\nfirst = rows[0]",
                   "%%step other\nconst = 42", "%%step report --ignore=noise\nmsg = f'first={first}'",
                   "%%step late\nz = 0", "%%step new\nw = 1")
    asked: list[str] = []
    plan = plan_replay(kernel.steps(), cells, "sort", None, _has_entry(kernel.store, asked))
    assert [(p.name, p.verdict) for p in plan.replay] == [
        ("sort", "will run"), ("other", "will hit"), ("report", "unknown (reads first)"),
        ("late", "will run (no cache entry)"), ("new", "will run (never ran in this run)")]
    assert plan.at == 1 and not any(p.recorded for p in plan.replay)
    assert plan.replay[2].cell.spec is not None and plan.replay[2].cell.spec.ignore == ("noise",)
    assert plan.made_later == {"rows", "first", "const", "msg", "z"}
    assert len(asked) == 2, "the store is asked only about steps whose inputs did not change"


def test_replay_plan_without_the_notebook_uses_the_journals_sources_in_run_order(kernel: Kernel) -> None:
    kernel.step("b", {"q": 0}, source="q = 0")
    kernel.step("a", {"p": 1}, source="p = 1")
    kernel.step("b", {"q": 2}, inputs=("p",), source="q = p + 1")  # b again: the one replayed
    kernel.step("c", {"r": 3}, inputs=("q",), source="r = q + 1")
    kernel.step("d", {"s": 4}, inputs=("r",), source="s = r + 1")
    plan = plan_replay(kernel.steps(), None, "b", "c", _has_entry(kernel.store, []))
    assert plan.at == 2, "where b last ran"
    assert [(p.name, p.cell.body, p.recorded) for p in plan.replay] == [
        ("b", "q = p + 1", True), ("c", "r = q + 1", True)]
    assert plan.replay[1].verdict == "unknown (reads q)"


@pytest.mark.parametrize(
    ("start", "stop", "message"),
    [
        ("nope", None, "no completed step 'nope' in this kernel's run; completed: a, b"),
        ("b", "a", "--to 'a' is not a step at or after 'b'; those are: b"),
    ],
)
def test_replay_plan_refuses_unknown_steps(kernel: Kernel, start: str, stop: str | None,
                                           message: str) -> None:
    kernel.step("a", {"p": 1})
    kernel.step("b", {"q": 2})
    with pytest.raises(StepUsageError) as info:
        plan_replay(kernel.steps(), None, start, stop, _has_entry(kernel.store, []))
    assert str(info.value) == message


def test_replay_plan_with_nothing_completed() -> None:
    with pytest.raises(StepUsageError, match="none yet"):
        plan_replay([], None, "a", None, lambda key: True)
