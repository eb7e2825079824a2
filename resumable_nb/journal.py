"""The run journal: an append-only, crash-safe event log per notebook, and what it means.

One file per notebook under ``<cache>/journal/``. Each event is one line::

    {"kind": "step_finished", "run": "...", "time": ..., ...}<TAB><HMAC-SHA256 of the JSON>\\n

appended on an ``O_APPEND`` descriptor (looping on short writes); a record that finishes a
computed step is fsynced before the step counts as complete. Nothing is ever rewritten.

The MAC is keyed with a key derived from the user's secret (:mod:`resumable_nb.keys`): a
record someone else wrote — a journal shipped in a cloned repository, edited by another user,
or made with another key — does not verify, and is ignored with one warning. Nothing of it is
restored or run (``%resume --run`` may run step sources recorded here).

Reading is forgiving: a torn last record (the process died mid-append) is ignored silently; a
damaged, unverified or malformed record elsewhere is skipped, and the reader says how many.
Appending after a torn tail starts a new line first, so the torn piece never swallows the next
record. Every state a user sees is derived from the events (:func:`runs`).

Events: ``run_started`` (notebook, pid, host, python, resumed_from; ``left``: the steps a
partial resume could not restore, and why), ``step_started`` (step, key, attempt, source,
line: the ``%%step`` line's arguments), ``step_finished`` (step, status ran/cached/failed,
duration, error, outputs {name: bytes}, deleted, saved; a hit's, which has no step_started,
also carries source and line), ``run_ended`` (status; ``waiting``
when it stopped at a gate), ``gate_waiting`` (gate, question, position: a headless run
stopped at a ``%gate``) and ``gate_decided`` (gate, decision approved/rejected, question,
position, user, host, note).

One kernel at a time holds a notebook's journal (``fcntl.flock`` on ``<name>.lock``, released
by the kernel's death); a second kernel is told who holds it and journals nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from . import _faults
from .cachedir import CacheDir
from .errors import StoreError
from .keys import default_key_file, derive, load_key
from .states import COMPLETE, JournalStatus, journal_status

__all__ = ["JOURNAL_VERSION", "GateView", "Journal", "RunView", "StepView", "journal_path", "read_events",
           "runs", "verify_lines"]

JOURNAL_VERSION = 3  # 3: a hit is one step_finished carrying the source; 2: records carry an HMAC


_last_micros = 0


def new_run_id() -> str:
    """Time-ordered and unique: ``20261122T031500.123456-9f2c1a`` (UTC, microseconds, strictly
    increasing within a process; the random suffix separates processes)."""
    global _last_micros
    micros = max(time.time_ns() // 1000, _last_micros + 1)
    _last_micros = micros
    seconds, fraction = divmod(micros, 1_000_000)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds)) + f".{fraction:06d}"
    return f"{stamp}-{secrets.token_hex(3)}"


def journal_path(root: Path, notebook: str | None) -> Path:
    """``<root>/journal/<stem>-<hash of the notebook's absolute path>.jsonl``."""
    return root / "journal" / journal_name(notebook)


def journal_name(notebook: str | None) -> str:
    """The journal's file name: ``<stem>-<hash of the notebook's absolute path>.jsonl``."""
    if notebook:
        name = Path(notebook).stem
        digest = xxhash.xxh3_64_hexdigest(str(Path(notebook).absolute()).encode())[:8]
    else:
        name = "ipython"
        digest = xxhash.xxh3_64_hexdigest(str(Path.cwd()).encode())[:8]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]
    return f"{safe}-{digest}.jsonl"


def journal_key(key_file: Path | None = None) -> bytes:
    """The key journal records are signed with, derived from the user's key.

    :raises StoreError: the key file is unusable (see :func:`resumable_nb.keys.load_key`).
    """
    return derive(load_key(key_file or default_key_file()), "journal")


# -- records ---------------------------------------------------------------------------------
def _mac(key: bytes, body: bytes) -> str:
    return hmac.digest(key, body, "sha256").hex()  # one-shot C: 1.7 us where hmac.new takes 4


class _Verifier:
    """Checks records' HMACs under one key, its pads computed once: each record costs a copy
    and an update (1.1 us; a %resume of 10,000 steps reads 20,000 records)."""

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def __call__(self, body: bytes, mac: bytes) -> bool:
        h = self._keyed.copy()
        h.update(body)
        return hmac.compare_digest(h.hexdigest().encode(), mac)


# One encoder, and one keyed HMAC state per key copied for each record: ``json.dumps`` with
# arguments builds a new encoder per call, and ``hmac.new`` hashes the key's pads again; every
# hit writes two records, and together that was a tenth of a hit on a one-line cell.
# Records are flat dicts this module builds (never cyclic): the cycle check's bookkeeping was
# a third of encoding one (1.5 of 4.8 us); keys stay in the order written (the MAC covers the
# bytes as written, readers parse them).
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str, check_circular=False)
_MAC_STATES: dict[bytes, Any] = {}


def _encode(record: Mapping[str, Any], key: bytes) -> bytes:
    body = _ENCODER.encode(record).encode()
    state = _MAC_STATES.get(key)
    if state is None:
        state = _MAC_STATES[key] = hmac.new(key, digestmod=hashlib.sha256)
        if len(_MAC_STATES) > 16:
            _MAC_STATES.pop(next(iter(_MAC_STATES)))
    mac = state.copy()
    mac.update(body)
    return body + b"\t" + mac.hexdigest().encode() + b"\n"


_OPT_STR = (str, type(None))
_NUM = (int, float)
# kind -> {field: accepted types}; a record missing a field, or with a field of another type,
# is malformed and skipped (every reader can then index it without checks).
_SCHEMA: dict[str, dict[str, tuple[type, ...]]] = {
    "run_started": {"notebook": _OPT_STR, "pid": (int,), "host": (str,), "python": (str,),
                    "resumed_from": _OPT_STR},
    "step_started": {"step": (str,), "key": _OPT_STR, "source": (str,)},
    "cell_ran": {"source": (str,), "ok": (bool,)},
    "step_finished": {"step": (str,), "status": (str,), "key": _OPT_STR, "duration": _NUM,
                      "saved": _NUM, "outputs": (dict,), "deleted": (list,), "error": (str,),
                      "reason": (str,), "inputs": (dict,)},
    "run_ended": {"status": (str,)},
    "gate_waiting": {"gate": (str,), "question": (str,), "position": (str,)},
    "gate_decided": {"gate": (str,), "decision": (str,), "question": (str,), "position": (str,),
                     "user": (str,), "host": (str,), "note": (str,)},
}


def _exact(types: tuple[type, ...]) -> frozenset[type]:
    """The exact types ``isinstance(v, types)`` accepts among what JSON decodes to (a bool is
    an int)."""
    return frozenset(types) | ({bool} if int in types else set())


# What JSON decoding makes is one of a few exact types: a set lookup per field, not isinstance.
_FIELDS = {kind: tuple((name, _exact(types)) for name, types in fields.items())
           for kind, fields in _SCHEMA.items()}


def _valid(record: Any) -> bool:
    """A decoded record has the fields (and field types) of its kind. ``record`` comes from
    JSON: dict, list, str, int, float, bool or None, which the exact-type checks rely on."""
    if type(record) is not dict or type(record.get("run")) is not str \
            or type(record.get("time")) not in (int, float):
        return False
    fields = _FIELDS.get(record.get("kind"))  # type: ignore[arg-type]
    if fields is None:
        return False
    get = record.get
    for name, types in fields:
        if type(get(name)) not in types:
            return False
    if record["kind"] == "step_finished":
        for k, v in record["outputs"].items():
            if type(k) is not str or type(v) not in (int, bool):
                return False
        for n in record["deleted"]:
            if type(n) is not str:
                return False
        for k, v in record["inputs"].items():
            if type(k) is not str or type(v) is not str:
                return False
    return True


_JSON = json.JSONDecoder()  # decode(str): json.loads(bytes) first guesses the encoding


def _decode(line: bytes, verify: _Verifier) -> tuple[str, dict[str, Any] | None]:
    """("ok", record) | ("foreign", None): not signed with this key | ("bad", None)."""
    body, tab, mac = line.rpartition(b"\t")
    if not tab or not body:
        return "bad", None
    if not verify(body, mac):
        return "foreign", None
    try:
        record = _JSON.decode(body.decode())
    except (UnicodeDecodeError, ValueError):
        return "bad", None
    return ("ok", record) if _valid(record) else ("bad", None)


def read_events(path: Path, key: bytes | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """The verified events of a journal file, and a warning when some records were skipped.

    ``key``: the journal key (:func:`journal_key`); by default, derived from the user's key.
    The file is opened without following a link; a torn last record is ignored silently.
    """
    if key is None:
        key = journal_key()
    data = read_journal_bytes(path)
    if not data:
        return [], None
    complete = data.split(b"\n")[:-1]  # the last piece has no newline: torn (or empty)
    events: list[dict[str, Any]] = []
    foreign = bad = 0
    verify = _Verifier(key)
    for line in complete:
        if not line:
            continue  # the newline written after a torn tail
        verdict, record = _decode(line, verify)
        if record is not None:
            events.append(record)
        elif verdict == "foreign":
            foreign += 1
        else:
            bad += 1
    problems = []
    if foreign:
        problems.append(f"{_count(foreign, 'record')} not signed with your key "
                        f"{'was' if foreign == 1 else 'were'} ignored (altered, or written by another "
                        "user, another key or an older resumable_nb)")
    if bad:
        problems.append(f"{_count(bad, 'damaged record')} {'was' if bad == 1 else 'were'} skipped")
    return events, (f"journal {path.name}: {'; '.join(problems)}" if problems else None)


def verify_lines(data: bytes, key: bytes) -> tuple[list[bytes], int]:
    """The complete lines of journal bytes (from a team store) whose record verifies with
    ``key``, each with its newline; and how many did not (another key, altered, malformed)."""
    good: list[bytes] = []
    rejected = 0
    verify = _Verifier(key)
    for line in data.split(b"\n")[:-1]:
        if not line:
            continue
        _, record = _decode(line, verify)
        if record is not None:
            good.append(line + b"\n")
        else:
            rejected += 1
    return good, rejected


def read_signed(path: Path, key: bytes | None = None) -> dict[str, Any] | None:
    """A JSON object written by :func:`write_signed` next to a journal, or None when it is
    missing, unreadable or not signed with ``key`` (someone else's: never trusted)."""
    try:
        data = read_journal_bytes(path)
    except StoreError:
        return None
    body, tab, mac = data.rstrip(b"\n").rpartition(b"\t")
    key = key if key is not None else journal_key()
    if not tab or not hmac.compare_digest(_mac(key, body).encode(), mac):
        return None
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_signed(root: Path, name: str, value: Mapping[str, Any], key: bytes | None = None) -> None:
    """Atomically replace ``<root>/journal/<name>`` with ``value``, signed (temp file + rename,
    all inside the checked cache folder, no link followed).

    :raises StoreError: the cache folder or key file is unusable.
    """
    data = _encode(value, key if key is not None else journal_key())
    with CacheDir(root) as cache:
        fd, tmp = cache.create_temp("journal", "tmp-", ".part")
        try:
            _write_all(fd, data)
            os.fsync(fd)
            os.close(fd)
            cache.rename("journal", tmp, "journal", name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            with contextlib.suppress(OSError, StoreError):
                cache.unlink("journal", tmp)
            raise


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def read_journal_bytes(path: Path) -> bytes:
    """A journal-folder file's bytes, opened without following a link (a FIFO, a folder or a
    device is refused with a StoreError; a missing file reads as empty)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise StoreError(f"cannot read the journal {path} ({exc.strerror}); a journal must be a "
                         "regular file, not a link") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StoreError(f"cannot read the journal {path}: it is not a regular file")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read()
    finally:
        os.close(fd)


# -- derived state ---------------------------------------------------------------------------
@dataclass(slots=True)
class StepView:
    """One execution of a step within a run."""

    name: str
    run: str
    key: str | None
    attempt: int
    source: str
    started: float
    status: JournalStatus = "running"
    duration: float = 0.0
    saved: float = 0.0
    error: str = ""
    reason: str = ""
    outputs: dict[str, int] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)  # name -> short fingerprint
    line: str = ""  # its %%step line's arguments, canonical ("" in records before they had it)

    @property
    def complete(self) -> bool:
        """Finished, and its outputs are in the cache under ``key``."""
        return self.status in COMPLETE and self.key is not None


@dataclass(frozen=True, slots=True)
class PlainCell:
    """A cell that ran as plain code (not a step), in the order cells ran."""

    run: str
    source: str
    ok: bool  # it finished without an exception


@dataclass(slots=True)
class GateView:
    """A ``%gate`` a run reached, and its decision once someone made it."""

    name: str
    question: str
    position: str  # the steps above it, in notebook order: moving it past a step asks again
    since: float  # when the run reached it
    decision: str | None = None  # approved / rejected; None: waiting
    user: str = ""
    host: str = ""
    note: str = ""
    decided: float | None = None

    def same(self, question: str, position: str) -> bool:
        """Is this the gate the notebook has now (a changed question or place asks again)?"""
        return self.question == question and self.position == position


@dataclass(slots=True)
class RunView:
    """One run: a kernel's session on a notebook (or a CLI execution)."""

    run: str
    notebook: str | None
    pid: int
    host: str
    started: float
    resumed_from: str | None = None
    python: str = ""
    ended: str | None = None
    steps: list[StepView] = field(default_factory=list)
    live: bool = False
    timeline: list[StepView | PlainCell] = field(default_factory=list)  # steps and plain cells
    # Steps of the runs it resumed that its resume could not restore (a corrupt or missing
    # entry, and the steps after it): name -> why. They are left to run, not restored.
    left: dict[str, str] = field(default_factory=dict)
    gates: list[GateView] = field(default_factory=list)  # in the order the run reached them

    @property
    def waiting(self) -> GateView | None:
        """The gate this run stopped at (decided or not), for a run that ended at one."""
        if self.ended != "waiting" or not self.gates:
            return None
        return self.gates[-1]

    @property
    def state(self) -> str:
        """running / completed / failed / interrupted / waiting (at a gate nobody decided yet)
        / approved / rejected (its gate's decision: the next ``resumable-nb run`` goes on)."""
        gate = self.waiting
        if gate is not None:
            return gate.decision or "waiting"
        if self.ended:
            return self.ended
        if self.live:
            return "running"
        return "interrupted"


def runs(events: Iterable[Mapping[str, Any]], live_run: str | None = None) -> dict[str, RunView]:
    """Fold events into runs (in start order). ``live_run`` is a run whose process is alive."""
    out: dict[str, RunView] = {}
    open_steps: dict[tuple[str, str], StepView] = {}
    attempts: dict[tuple[str, str], int] = {}
    for e in events:
        kind, run_id = e.get("kind"), e.get("run")
        if not isinstance(run_id, str):
            continue
        if kind == "run_started":
            out[run_id] = RunView(run=run_id, notebook=e.get("notebook"), pid=int(e.get("pid", 0)),
                                  host=str(e.get("host", "")), started=float(e.get("time", 0)),
                                  resumed_from=e.get("resumed_from"), python=str(e.get("python", "")))
            left = e.get("left")  # optional: older records have none
            if isinstance(left, dict):
                out[run_id].left = {str(k): str(v) for k, v in left.items()}
            continue
        run = out.get(run_id)
        if run is None:
            continue
        if kind == "step_started" or (kind == "step_finished" and isinstance(e.get("source"), str)):
            # A hit is one record: a step_finished that carries the source starts it too.
            name = str(e["step"])
            attempts[(run_id, name)] = attempts.get((run_id, name), 0) + 1
            step = StepView(name=name, run=run_id, key=e.get("key"), attempt=attempts[(run_id, name)],
                            source=str(e.get("source", "")), started=float(e.get("time", 0)),
                            line=e["line"] if isinstance(e.get("line"), str) else "")
            run.steps.append(step)
            run.timeline.append(step)
            open_steps[(run_id, name)] = step
        if kind == "cell_ran":
            run.timeline.append(PlainCell(run_id, str(e["source"]), bool(e["ok"])))
        elif kind == "step_finished":
            finished = open_steps.pop((run_id, str(e["step"])), None)
            if finished is None:
                continue
            step = finished
            step.status = journal_status(e.get("status"))
            step.duration = float(e.get("duration", 0.0))
            step.saved = float(e.get("saved", 0.0))
            step.error = str(e.get("error", ""))
            step.reason = str(e.get("reason", ""))
            step.outputs = dict(e.get("outputs", {}))
            step.deleted = list(e.get("deleted", []))
            raw_inputs = e.get("inputs") or {}
            step.inputs = dict(raw_inputs) if isinstance(raw_inputs, dict) else dict.fromkeys(raw_inputs, "")
            step.key = e.get("key")
        elif kind == "run_ended":
            run.ended = str(e.get("status", "completed"))
        elif kind == "gate_waiting":
            run.gates.append(GateView(str(e["gate"]), str(e["question"]), str(e["position"]),
                                      since=float(e["time"])))
        elif kind == "gate_decided":
            gate = next((g for g in reversed(run.gates) if g.name == e["gate"] and g.decision is None),
                        None)
            if gate is None:  # passed in a live notebook, or carried over by a resumed run
                gate = GateView(str(e["gate"]), str(e["question"]), str(e["position"]),
                                since=float(e["time"]))
                run.gates.append(gate)
            gate.decision = "rejected" if e["decision"] == "rejected" else "approved"
            gate.user, gate.host, gate.note = str(e["user"]), str(e["host"]), str(e["note"])
            gate.decided = float(e["time"])
    for run in out.values():
        run.live = run.run == live_run or (run.ended is None and _held_by_other(run))
        for step in run.steps:
            if step.status == "running" and not (run.live and step is run.steps[-1]):
                step.status = "interrupted"
    return out


def _held_by_other(run: RunView) -> bool:
    """Is the process that wrote ``run`` still alive on this host?"""
    if run.host != socket.gethostname() or run.pid <= 0 or run.pid == os.getpid():
        return False
    try:
        os.kill(run.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if _is_zombie(run.pid):  # exited, not yet reaped by its parent
        return False
    return _proc_start(run.pid) <= run.started + 1  # a reused pid started after the run did


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _proc_start(pid: int) -> float:
    """When ``pid`` started (epoch seconds), from /proc; 0 where that is unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(stat[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return 0.0


def chain(all_runs: Mapping[str, RunView], run_id: str) -> list[StepView]:
    """The completed steps whose outputs make up ``run_id``'s namespace, in execution order:
    those of the run it resumed from (recursively), then its own."""
    return [s for s in timeline(all_runs, run_id) if isinstance(s, StepView)]


def timeline(all_runs: Mapping[str, RunView], run_id: str) -> list[StepView | PlainCell]:
    """What made ``run_id``'s namespace, in execution order: the completed steps and the plain
    cells of the runs it resumed from (recursively), then its own."""
    seen: set[str] = set()
    order: list[RunView] = []
    current: str | None = run_id
    while current is not None and current in all_runs and current not in seen:
        seen.add(current)
        order.append(all_runs[current])
        current = all_runs[current].resumed_from
    items: list[StepView | PlainCell] = []
    for run in reversed(order):
        items.extend(s for s in run.timeline if isinstance(s, PlainCell) or s.complete)
    return items


# -- writing ---------------------------------------------------------------------------------
class Journal:
    """This kernel's writer for one notebook's journal."""

    def __init__(self, root: Path | CacheDir, notebook: str | None, key: bytes | None = None) -> None:
        """``root``: the cache folder (a :class:`CacheDir` already checked, or its path).
        ``key``: the journal key; by default derived from the user's key file.

        :raises StoreError: the cache folder or the key file is unusable.
        """
        self.key = key if key is not None else journal_key()
        self._own_dir = not isinstance(root, CacheDir)
        self.dir = root if isinstance(root, CacheDir) else CacheDir(root)
        self.name = journal_name(notebook)
        self.path = self.dir.path / "journal" / self.name
        self.notebook = notebook
        self.run_id: str | None = None
        self.resumed_from: str | None = None
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self.holder: str | None = None  # who holds the notebook when we cannot
        self.on_append: Callable[[], None] | None = None  # e.g. the panel's refresh

    # -- the hold ---------------------------------------------------------------------------
    def acquire(self) -> bool:
        """Take the notebook's hold; False (and ``holder`` says who) if another process has it."""
        if self._lock_fd is not None:
            return True
        # A planted link or hard link is refused: we truncate and rewrite this file.
        fd = self.dir.open("journal", self.name[:-len(".jsonl")] + ".lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
            except ValueError:
                info = {}
            os.close(fd)
            self.holder = (f"pid {info.get('pid', '?')} on {info.get('host', '?')} "
                           f"(run {info.get('run', '?')})")
            return False
        self._lock_fd = fd
        self.holder = None
        return True

    def _write_holder(self) -> None:
        if self._lock_fd is None:
            return
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "run": self.run_id})
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, info.encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None
        if self._own_dir:
            self.dir.close()

    # -- events -----------------------------------------------------------------------------
    def _append(self, records: list[dict[str, Any]], durable: bool) -> None:
        self._append_raw(b"".join(_encode(r, self.key) for r in records), durable)

    def _append_raw(self, data: bytes, durable: bool) -> None:
        if self._fd is None:
            fd = self.dir.open("journal", self.name, os.O_RDWR | os.O_APPEND | os.O_CREAT)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                _write_all(fd, b"\n")  # end a torn record, so it cannot swallow the next one
            self._fd = fd
        _write_all(self._fd, data)
        if durable:
            os.fsync(self._fd)
        if self.on_append is not None:
            with contextlib.suppress(Exception):  # a listener never breaks journaling
                self.on_append()

    def append_lines(self, lines: Iterable[bytes]) -> None:
        """Append records written elsewhere (another machine's run, from the team store),
        already verified with this journal's key (:func:`verify_lines`)."""
        data = [line for line in lines if line.endswith(b"\n")]
        if data:
            self._append_raw(b"".join(data), durable=True)

    def start_run(self, resumed_from: str | None = None, left: Mapping[str, str] | None = None) -> str:
        """Begin a new run (ending the current one, if any, as completed). ``left``: the steps
        of ``resumed_from``'s runs that the resume could not restore, and why."""
        if self.run_id is not None:
            self.end_run("completed")
        self.run_id = new_run_id()
        self.resumed_from = resumed_from
        self._write_holder()
        self._append([{
            "kind": "run_started", "run": self.run_id, "time": time.time(), "v": JOURNAL_VERSION,
            "notebook": self.notebook, "pid": os.getpid(), "host": socket.gethostname(),
            "python": sys.version.split()[0], "resumed_from": resumed_from,
            **({"left": dict(left)} if left else {}),
        }], durable=True)
        return self.run_id

    def ensure_run(self) -> str:
        return self.run_id if self.run_id is not None else self.start_run()

    def step_started(self, step: str, key: str | None, source: str, line: str = "") -> None:
        """``line``: the ``%%step`` line's arguments, so that a cell rebuilt from the journal
        (no notebook file) runs with the same options (``--ignore`` is in the key)."""
        self._append([self._started(step, key, source, line)], durable=False)

    def _started(self, step: str, key: str | None, source: str, line: str = "") -> dict[str, Any]:
        return {"kind": "step_started", "run": self.ensure_run(), "time": time.time(),
                "step": step, "key": key, "source": source, **({"line": line} if line else {})}

    def step_finished(self, step: str, status: JournalStatus, *, key: str | None, duration: float,
                      outputs: Mapping[str, int] | None = None, deleted: Iterable[str] = (),
                      error: str = "", saved: float = 0.0, reason: str = "",
                      inputs: Mapping[str, str] | None = None,
                      started: tuple[str | None, str] | None = None, line: str = "") -> None:
        """Record the end of a step; a computed step's record is fsynced (it is then complete).

        ``started`` = (key, source): the step had no step_started record (a hit): this one
        record starts and ends it, with the source (and ``line``) a step_started carries.
        """
        record = {
            "kind": "step_finished", "run": self.ensure_run(), "time": time.time(), "step": step,
            "status": status, "key": key, "duration": round(duration, 6), "saved": round(saved, 6),
            "outputs": dict(outputs or {}), "deleted": list(deleted), "error": error[:500],
            "reason": reason[:500], "inputs": dict(sorted((inputs or {}).items())),
        }
        if started is not None:
            record["source"] = started[1]
            if line:
                record["line"] = line
        _faults.point("journal-before-finish")
        self._append_raw(_encode(record, self.key), durable=status == "ran")
        _faults.point("journal-after-finish")

    def cell_ran(self, source: str, ok: bool) -> None:
        """Record a plain (non-step) cell, so that %resume can rebuild what it made."""
        self._append([{"kind": "cell_ran", "run": self.ensure_run(), "time": time.time(),
                       "source": source, "ok": ok}], durable=False)

    def end_run(self, status: str) -> None:
        if self.run_id is None:
            return
        with contextlib.suppress(OSError, StoreError):
            self._append([{"kind": "run_ended", "run": self.run_id, "time": time.time(),
                           "status": status}], durable=True)
        self.run_id = None

    def gate_waiting(self, gate: str, question: str, position: str) -> None:
        """This run stopped at ``gate`` for a decision (it then ends as ``waiting``)."""
        self._append([{"kind": "gate_waiting", "run": self.ensure_run(), "time": time.time(),
                       "gate": gate, "question": question, "position": position}], durable=True)

    def gate_decided(self, run_id: str | None, gate: str, decision: str, *, question: str,
                     position: str, user: str, host: str, note: str = "") -> None:
        """Record a decision on ``gate`` for ``run_id`` (None: this kernel's run).

        Needs no hold on the notebook: a decision is one short ``O_APPEND`` write, and the run
        it decides has ended (``resumable-nb approve`` while the notebook is open in Lab).
        """
        self._append([{"kind": "gate_decided", "run": run_id or self.ensure_run(), "time": time.time(),
                       "gate": gate, "decision": decision, "question": question,
                       "position": position, "user": user, "host": host, "note": note[:500]}],
                     durable=True)

    # -- views ------------------------------------------------------------------------------
    def read(self) -> tuple[dict[str, RunView], str | None]:
        events, warning = read_events(self.path, self.key)
        return runs(events, live_run=self.run_id), warning


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def iter_journals(root: Path) -> Iterator[Path]:
    yield from sorted((root / "journal").glob("*.jsonl"))
