"""The notebook file side of ``resumable-nb run``: reading and checking a notebook, its code
cells, ``-p`` parameters and their injection (papermill's convention), writing the executed
notebook, and the run record kept next to the journal. Runs in the CLI, never in the kernel;
nbformat is imported only where a whole notebook is read or written (it takes a second)."""

from __future__ import annotations

import ast
import hashlib
import json
import keyword
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import RunError
from .journal import read_signed, write_signed
from .resume import Cell, parse_cells

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = [
    "RECORD_VERSION",
    "CodeCell",
    "cell_tags",
    "code_cells",
    "inject_parameters",
    "normal_source",
    "notebook_json",
    "parameter_warnings",
    "parse_parameter",
    "read_notebook",
    "read_record",
    "record_path",
    "skipped",
    "source_digest",
    "write_notebook",
    "write_record",
]

RECORD_VERSION = 2  # 2: signed with the journal key
# Cells that would fight the CLI over the run (it resumes by itself): never executed headless.
_SKIPPED = ("%resume", "%replay", "%reload_ext resumable_nb", "%unload_ext resumable_nb")


def parse_parameter(name: str, text: str) -> tuple[str, Any]:
    """``-p NAME VALUE``: VALUE is a Python literal if it parses as one, else a string.

    :raises RunError: NAME is not an identifier, or the value cannot be written back as code.
    """
    if not name.isidentifier() or keyword.iskeyword(name):
        raise RunError(f"-p {name!r}: a parameter name must be a Python identifier (like n_rows)")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return name, text
    try:
        ast.literal_eval(repr(value))
    except (ValueError, SyntaxError):
        raise RunError(f"-p {name} {text}: {value!r} cannot be written as a Python literal; "
                       "quote it to pass a string") from None
    return name, value


def notebook_json(path: Path) -> dict[str, Any]:
    """The notebook's JSON, checked enough to tell a notebook from anything else. Fast: the
    checks and the read-only commands need no nbformat (whose import takes a second or more).

    :raises RunError: missing, not a file, or not a Jupyter notebook.
    """
    if not path.exists():
        raise RunError(f"{path}: no such file")
    if not path.is_file():
        raise RunError(f"{path}: not a file")
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise RunError(f"{path}: cannot be read ({exc.strerror})") from None
    except ValueError:  # UnicodeDecodeError included
        raise RunError(f"{path}: not a Jupyter notebook (not JSON)") from None
    cells = data.get("cells", data.get("worksheets")) if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("nbformat"), int) or not isinstance(cells, list):
        raise RunError(f"{path}: not a Jupyter notebook (no nbformat version or no cells)")
    if "cells" not in data:  # nbformat 3: worksheets; rare enough to pay for nbformat
        data = dict(read_notebook(path))
    return data


def read_notebook(path: Path) -> NotebookNode:
    """The notebook at ``path``, as nbformat 4.

    :raises RunError: missing, not a file, or not a Jupyter notebook.
    """
    import nbformat

    if not path.is_file():
        notebook_json(path)  # raises the right message
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds for a non-notebook
        detail = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise RunError(f"{path}: not a Jupyter notebook ({detail})") from None
    if not isinstance(nb.get("cells"), list):
        raise RunError(f"{path}: not a Jupyter notebook (no cells)")
    return nb


CodeCell = Cell  # a code cell of the notebook being run (positions count the injected cell)


def skipped(cell: Cell) -> bool:
    """Only %resume / %replay / re- or unloading lines: the CLI never executes it."""
    lines = [ln.strip() for ln in cell.source.splitlines()
             if ln.strip() and not ln.strip().startswith("#")]
    return bool(lines) and all(ln.startswith(_SKIPPED) for ln in lines)


def code_cells(nb: Mapping[str, Any]) -> list[Cell]:
    """The code cells of a notebook (nbformat 4, as a NotebookNode or its JSON)."""
    return parse_cells(nb)


def inject_parameters(nb: NotebookNode, parameters: Mapping[str, Any]) -> None:
    """Replace any ``injected-parameters`` cell by one with ``NAME = VALUE`` lines, right after
    the cell tagged ``parameters`` (at the top when there is none), as papermill does."""
    import nbformat

    nb.cells = [c for c in nb.cells if "injected-parameters" not in cell_tags(c)]
    at = next((i + 1 for i, c in enumerate(nb.cells) if "parameters" in cell_tags(c)), 0)
    lines = ["# Parameters", *(f"{name} = {value!r}" for name, value in parameters.items())]
    cell = nbformat.v4.new_code_cell("\n".join(lines) + "\n", metadata={"tags": ["injected-parameters"]})
    if nb.get("nbformat_minor", 5) < 5:
        cell.pop("id", None)  # cell ids are only valid from nbformat 4.5
    nb.cells.insert(at, cell)


def parameter_warnings(nb: Mapping[str, Any], names: list[str]) -> list[str]:
    """One line per problem with ``-p NAME`` values, before they are injected: a name the
    notebook never assigns (a typo: the value is set and nothing reads it), and no cell tagged
    ``parameters`` (the values then go in at the top, where the notebook's own assignment
    overwrites them)."""
    cells = [c for c in nb.get("cells", []) if isinstance(c, Mapping) and c.get("cell_type") == "code"
             and "injected-parameters" not in cell_tags(c)]
    assigned: set[str] = set()
    for cell in cells:
        raw = cell.get("source", "")
        source = raw if isinstance(raw, str) else "".join(raw)
        assigned |= _assigned(source)
    lines = [f"-p {name}: the notebook never assigns {name!r} (a typo?); it is set, but "
             "nothing may read it" for name in names if name not in assigned]
    if names and not any("parameters" in cell_tags(c) for c in cells):
        clash = [n for n in names if n in assigned]
        what = (f"its own assignment of {', '.join(clash)} overwrites the -p value"
                if clash else "a later assignment would overwrite them")
        lines.append("no cell is tagged 'parameters': the -p values go in at the top, and "
                     f"{what}; tag the cell that sets the defaults 'parameters'")
    return lines


def _assigned(source: str) -> set[str]:
    """Names a cell binds at top level or anywhere in it (magic and shell lines left out)."""
    lines = source.splitlines()
    if lines and lines[0].startswith("%%"):
        lines = lines[1:] if lines[0].startswith("%%step") else []
    code = "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in lines)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def cell_tags(cell: Mapping[str, Any]) -> list[str]:
    """The cell's ``metadata.tags`` (empty when missing or malformed)."""
    tags = cell.get("metadata", {}).get("tags", [])
    return list(tags) if isinstance(tags, list) else []


def record_path(journal: Path) -> Path:
    """``<journal>.cli.json``: not ``*.jsonl``, so journal readers never take it for a journal."""
    return journal.with_name(journal.stem + ".cli.json")


def read_record(journal: Path) -> dict[str, Any]:
    """What ``resumable-nb run`` recorded per run id: the digests of the code cells it executed,
    its parameters and outcome. Empty when missing, unreadable or not signed with the user's key
    (then only the journal counts)."""
    data = read_signed(record_path(journal))
    got = data.get("runs") if data is not None and data.get("schema") == RECORD_VERSION else None
    return got if isinstance(got, dict) else {}


def write_record(journal: Path, run_id: str, entry: dict[str, Any], keep: int = 50) -> None:
    """Record ``entry`` for ``run_id`` (signed with the journal key), keeping the last ``keep``.

    :raises OSError, StoreError: the record cannot be written.
    """
    records = read_record(journal)
    records.pop(run_id, None)
    records[run_id] = entry
    records = dict(list(records.items())[-keep:])
    write_signed(journal.parent.parent, record_path(journal).name,
                 {"schema": RECORD_VERSION, "runs": records})


def _umask() -> int:
    """This process's umask, read without changing it (``os.umask`` must set it to read it,
    which would race with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def normal_source(text: str) -> str:
    """``text`` without trailing whitespace on its lines or blank lines around it: what a
    re-save of the notebook may change without changing the code."""
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def source_digest(text: str) -> str:
    """A short digest of a cell's code, as the run record keeps it."""
    return hashlib.sha256(normal_source(text).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def write_notebook(nb: NotebookNode, path: Path) -> None:
    """Write ``nb`` to ``path`` atomically (a temp file renamed over it): an interrupted write
    leaves the old file, never half a notebook."""
    import nbformat

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            nbformat.write(nb, f)
        os.chmod(tmp, 0o666 & ~_umask())  # as `open` would: a private umask keeps it private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
