"""One step, end to end: analyse -> fingerprint -> key -> hit (restore) or miss (run, store).

The runner owns the rules that keep a hit honest:

- the key covers the normalised code, the content of every input (and of every notebook
  global that a function the step calls reads), and the identity of the modules it imports;
- an input that cannot be fingerprinted makes the step run, with a notice — never a hit
  keyed on the source alone;
- outputs are the names the step binds or deletes, the inputs whose content changed (in-place
  mutation), and whatever the namespace diff shows appeared or was rebound;
- a failed restore (corrupt payload, a class that changed) turns the hit into a miss; the
  namespace is only written once the whole entry has loaded.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import os
import re
import sys
import time
import tokenize
import types
from collections import ChainMap, OrderedDict
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from . import aliases, capture, files, mplstate, procstate, retry, rng, serialize, setup_magics, why
from ._await import run_code
from ._introspect import frame_kind, frame_names, string_frame_names
from .analysis import CellAnalysis, analyse, normalised_code
from .errors import (
    CorruptEntry,
    RestoreError,
    StepUsageError,
    StoreError,
    Unfingerprintable,
    Unstorable,
)
from .fingerprint import (
    FINGERPRINT_VERSION,
    Fingerprinter,
    attribute_reads,
    env_aliases,
    environ_reads,
    environ_value,
    foreign_attributes,
    import_environ_reads,
    import_identity,
    path_templates,
)
from .journal import Journal
from .states import JournalStatus
from .stepline import StepLine, check_ignore, check_step_name
from .store import Store, output_sizes

__all__ = ["KEY_VERSION", "StepResult", "StepRunner", "step_key"]

KEY_VERSION = 2
"""Increment on any change to how keys are computed: every stored entry then misses.

2: process settings (decimal context, np.seterr, 'error' warnings filters, pandas options,
sys.argv) enter the key when not fresh (procstate.py). An entry of version 1 may have been
made under any of them: without the bump, a step run with prec=5 then would hit now with the
default precision. Values' fingerprints (FINGERPRINT_VERSION) are unchanged."""

_IPYTHON_NAMES = re.compile(r"^(_+|_i+|_i\d+|_\d+|_ih|_oh|_dh|In|Out|__.*__)$")
_ABSENT = "absent"


@dataclass(slots=True)
class StepResult:
    """What happened to one step execution."""

    name: str
    status: JournalStatus  # "ran" | "cached" | "failed", as the journal records it
    key: str | None
    duration: float
    stored: bool = False
    saved: float = 0.0
    reason: str = ""
    outputs: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    notices: list[str] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)  # name -> short fingerprint
    output_sizes: dict[str, int] = field(default_factory=dict)
    error: str = ""
    source: str = ""
    line: str = ""  # the %%step line's arguments, canonical (journaled with the source)


class _Replayed:
    """The last expression's display, replayed on a hit as the cell's result."""

    def __init__(self, data: dict[str, Any], metadata: dict[str, Any]) -> None:
        self._data = data
        self._metadata = metadata

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict, dict]:
        return self._data, self._metadata

    def __repr__(self) -> str:
        return str(self._data.get("text/plain", ""))


_KEY_JSON = json.JSONEncoder(sort_keys=True)  # json.dumps(..., sort_keys=True), one encoder


_MAY_HOLD_PATHS = (str, os.PathLike, list, tuple, dict, set, frozenset)


def step_key(code: str, inputs: dict[str, str], imports: Iterable[str], ignore: Iterable[str]) -> str:
    """The cache key: versions + normalised code + input fingerprints + imported modules."""
    return _step_key(code, tuple(sorted(inputs.items())), tuple(sorted(imports)), tuple(sorted(ignore)))


@functools.lru_cache(maxsize=512)  # a repeated hit computes the same key: a tuple lookup, not JSON
def _step_key(code: str, inputs: tuple[tuple[str, str], ...], imports: tuple[str, ...],
              ignore: tuple[str, ...]) -> str:
    material = _KEY_JSON.encode(
        {"v": KEY_VERSION, "fp": FINGERPRINT_VERSION, "code": code,
         "inputs": [list(i) for i in inputs], "imports": list(imports), "ignore": list(ignore)},
    ).encode()
    return "step-" + hashlib.sha256(material).hexdigest()


class StepRunner:
    """Runs ``%%step`` cells against one shell and one store (either may be swapped)."""

    def __init__(self, shell: Any, store: Callable[[], Store | None],
                 notice: Callable[[str], None],
                 journal: Callable[[], Journal | None] = lambda: None) -> None:
        self.shell = shell
        self._store = store
        self._notice = notice
        self._journal = journal
        self._parsed: OrderedDict[str, tuple[str, CellAnalysis, types.CodeType]] = OrderedDict()
        self.history: list[StepResult] = []
        self._told_dynamic: set[tuple[str, str]] = set()
        self.verbose = True
        self.lazy = False  # map restored arrays copy-on-write instead of reading them
        self.files = files.StepFiles()
        self._function_paths: set[str] = set()  # built by the functions the last keyed step reaches
        self._function_guarded = False  # one of them may write a file only if absent & co.
        self._named_files: tuple[str, dict[str, tuple[int, ...] | None]] | None = None

    # -- entry point --------------------------------------------------------------------
    def run(self, name: str, body: str, *, force: bool = False, ignore: Iterable[str] = (),
            header: str = "", line: StepLine | None = None) -> Any:
        """Run one step; return the value of its last expression (shown as the cell's result).

        ``line``: the parsed ``%%step`` line, for its file and retry options.

        :raises StepUsageError: bad name, empty body, unsupported syntax.
        :raises BaseException: whatever the step body raises (nothing is stored then).
        """
        __tracebackhide__ = True
        check_step_name(name)
        ignore = check_ignore(ignore)
        if not body.strip():
            raise StepUsageError(f"step '{name}' has an empty body: put the step's code below "
                                 "the %%step line")
        opts = line if line is not None else StepLine(name, force=force, ignore=ignore)
        analysis, result, inputs, uncacheable = self._prepare(name, body, ignore, opts)
        result.line = _canonical(opts)
        store = self._store()
        key = result.key
        if key is not None and store is not None and not force:
            hit, value = self._try_restore(name, key, store, result)
            if hit:
                return value
        elif force:
            result.reason = "--force"
        elif uncacheable:
            result.reason = uncacheable
        if self.verbose:
            print(_miss_line(result))
        return self._run_and_store(name, body, header, analysis, inputs, key, store, result, opts)

    def current(self, name: str, body: str, ignore: Iterable[str] = (),
                line: StepLine | None = None) -> StepResult:
        """The key and input fingerprints step ``name`` would have now; runs nothing."""
        return self._prepare(name, body, check_ignore(ignore), line or StepLine(name))[1]

    def _prepare(self, name: str, body: str, ignore: tuple[str, ...], opts: StepLine
                 ) -> tuple[CellAnalysis, StepResult, dict[str, str], str | None]:
        """Analyse and fingerprint: (analysis, result with key and short inputs, full input
        fingerprints, why the step cannot be cached or None)."""
        code, analysis, compiled = self._analyse(name, body)
        result = StepResult(name=name, status="ran", key=None, duration=0.0, source=body)
        inputs, imports, uncacheable = self._fingerprint_inputs(name, analysis, compiled, ignore, result)
        if uncacheable is None:
            uncacheable = self._file_inputs(name, analysis, opts, inputs, self._store(), result,
                                            self._built_paths(analysis, compiled))
        result.inputs = {k: v[:16] for k, v in inputs.items()}
        # What the journal keeps of the imported modules, so that a miss can name one.
        result.inputs.update(_module_entries(imports))
        if uncacheable is None:
            result.key = step_key(code, inputs, imports, ignore)
        return analysis, result, inputs, uncacheable

    # -- analysis -----------------------------------------------------------------------
    def _analyse(self, name: str, body: str) -> tuple[str, CellAnalysis, types.CodeType]:
        # Keyed by the raw body: a repeated cell skips IPython's transform (the costliest part
        # of a hit on a short cell) as well as the parse.
        cached = self._parsed.get(body)
        if cached is not None:
            self._parsed.move_to_end(body)
            return cached
        transformed = self.shell.transform_cell(body)
        try:
            tree, analysis = analyse(transformed)
            # What only the compiler sees ('return' outside function, 'break' outside loop):
            # one line now, not a traceback through resumable_nb later.
            # The bytecode also tells which names reach the environment or a module's
            # attribute (fingerprint.environ_reads, attribute_reads), as for a function.
            compiled = compile(tree, "<step>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                               dont_inherit=True)
        except SyntaxError as exc:
            raise StepUsageError(f"step '{name}' is not valid Python: {exc.msg} "
                                 f"(line {(exc.lineno or 0) + 1} of the cell)") from None
        entry = (normalised_code(tree), analysis, compiled)
        self._parsed[body] = entry
        if len(self._parsed) > 512:
            self._parsed.popitem(last=False)
        return entry

    def _user_names(self) -> set[str]:
        hidden = self.shell.user_ns_hidden
        ns = self.shell.user_ns
        return {k for k, v in ns.items()
                if not _IPYTHON_NAMES.match(k) and not (k in hidden and hidden[k] is v)}

    def _fingerprint_inputs(self, name: str, analysis: CellAnalysis, compiled: types.CodeType,
                            ignore: tuple[str, ...], result: StepResult
                            ) -> tuple[dict[str, str], list[str], str | None]:
        """Fingerprint every input, following the notebook globals that functions read.

        Returns the fingerprints, the identities of the modules the cell imports, and — if
        something cannot be fingerprinted — why (the step then runs uncached).
        """
        ns = self.shell.user_ns
        hidden = self.shell.user_ns_hidden
        skip = set(ignore)
        self._function_paths = set()
        self._function_guarded = False
        dynamic = analysis.dynamic[0] if analysis.dynamic else None
        frames = _frame_reads(analysis, ns)
        wanted = set(analysis.inputs) | frames.keys() | (self._user_names() if dynamic else set())
        # An installed module's attribute the step reads that was set from elsewhere
        # (statistics.mean = lambda ...): by its content, under "attr:statistics.mean".
        patched = {f"attr:{k}": v for k, v in
                   foreign_attributes(attribute_reads(compiled), ChainMap(ns, sys.modules)).items()}
        queue = sorted((wanted - skip) | patched.keys(), reverse=True)
        fps: dict[str, str] = {}
        fper = Fingerprinter(ns, follow_globals=False)
        # Names whose readers' code is scanned for env reads by object (environ_reads with
        # aliases): the step's own inputs and the globals of the functions it reaches.
        scanned = set(analysis.inputs)
        while queue:
            var = queue.pop()
            if var in fps:
                continue
            if var in patched:
                value = patched[var]
            elif var not in ns:
                if not hasattr(builtins, var):
                    fps[var] = _ABSENT
                continue
            else:
                value = ns[var]
            if var in hidden and hidden[var] is value and not _IPYTHON_NAMES.match(var):
                continue  # IPython's own (get_ipython, exit...), unchanged; but _, Out... count
            fper.globals_read.clear()
            try:
                fps[var] = fper.hash(value, named=var in scanned)
            except Unfingerprintable as exc:
                where = f" (through {exc.path})" if exc.path and exc.path != var else ""
                reason = f"input '{var}'{where}: {exc.reason}"
                result.notices.append(f"step '{name}' runs without the cache: {reason} "
                                      f"(pass --ignore {var} to leave it out of the key)")
                return fps, [], reason
            scanned |= fper.globals_read
            queue.extend(sorted(fper.globals_read - fps.keys() - skip, reverse=True))
            if isinstance(value, str):  # q = 'a > @thr' handed to a helper calling df.query
                for read, shown in string_frame_names(value).items():
                    frames.setdefault(read, f"the string in {var}:{shown}")
                    if read not in fps and read not in skip:
                        queue.append(read)
            if dynamic is None and fper.dynamic is not None:
                dynamic = fper.dynamic  # a helper from an earlier cell reads globals() & co.
                queue.extend(sorted(self._user_names() - fps.keys() - skip, reverse=True))
        for var, label in frames.items():
            # Read only through a library's string: said as such when it changes (the name
            # stays too, for the pipeline graph and %resume's plan).
            if var in fps and var not in analysis.inputs:
                fps[f"frame:{label}"] = fps[var]
        self._function_paths = fper.paths
        self._function_guarded = fper.guarded
        for var in sorted(self._environ_reads(analysis, compiled, fper.env_read)):
            fps[f"env:{var}"] = environ_value(var)
        # Process settings that change results (decimal context, np.seterr, 'error' warnings
        # filters, pandas options, sys.argv), when not as a new process has them: procstate.py
        fps.update(procstate.key_entries())
        if dynamic is not None and (name, dynamic) not in self._told_dynamic:
            self._told_dynamic.add((name, dynamic))  # said once per step and cause per kernel
            result.notices.append(f"step '{name}': {dynamic} hides what it reads and writes; "
                                  "every variable in the namespace is treated as an input")
        try:
            imports = sorted(import_identity(m) for m in analysis.imports)
        except Unfingerprintable as exc:
            result.notices.append(f"step '{name}' runs without the cache: {exc.reason}")
            return fps, [], exc.reason
        return fps, imports, None

    def _environ_reads(self, analysis: CellAnalysis, compiled: types.CodeType,
                       by_functions: set[str]) -> set[str]:
        """The environment variables the step reads: in its code (by spelling, and by the
        object a name holds: ``ge = os.getenv``), in the functions it reaches, and in the local
        modules it imports that are not loaded yet (their top-level code runs on import). A
        variable the step itself sets before any read of it (``%env X=1``, then ``X`` read) is
        no input of it: what it held before cannot matter — unless a function it reaches or a
        module it imports reads it too (they may run before the set)."""
        aliases = env_aliases(analysis.inputs, self.shell.user_ns)
        own = set(analysis.env | environ_reads(compiled, aliases))
        imported = set().union(*(import_environ_reads(m) for m in analysis.imports))
        own -= analysis.env_set_first - by_functions - imported
        return own | by_functions | imported

    def _built_paths(self, analysis: CellAnalysis, compiled: types.CodeType) -> set[str]:
        """Paths the step's code and the functions it reaches build from ``str`` / ``Path``
        globals and literals (``DATA / 'd.txt'``, ``os.path.join(DIR, 'x')``); a name the step
        binds to a literal path itself counts with that value too (and with the value it has
        now, which a use before the binding reads)."""
        ns = self.shell.user_ns
        templates = path_templates(compiled)
        built = files.resolve_paths(templates, ns) | self._function_paths
        if analysis.path_bindings and templates:
            built |= files.resolve_paths(templates, ChainMap(dict(analysis.path_bindings), ns))
        return built

    def _file_inputs(self, name: str, analysis: CellAnalysis, opts: StepLine, inputs: dict[str, str],
                     store: Store | None, result: StepResult, built: set[str]) -> str | None:
        """Add the files the step reads to ``inputs`` (resumable_nb.files); why not, if not."""
        ns = self.shell.user_ns
        values = [ns[v] for v, fp in inputs.items() if fp != _ABSENT and v in ns]
        if not (analysis.paths or built or opts.reads or opts.writes
                or any(isinstance(v, _MAY_HOLD_PATHS) for v in values)):
            return None
        if store is not None:
            self.files.open(store.root, store.journal_key)
        # Which named files exist now: after the step, those it created or changed are its
        # products (not inputs) for its next run (files.StepFiles.record_made).
        paths = analysis.paths | built
        self._named_files = (name, self.files.snapshot(self.files.candidates(paths, values)))
        try:
            found = self.files.inputs(paths, values, opts.reads, opts.writes,
                                      [str(store.root)] if store is not None else [], step=name)
        except OSError as exc:
            reason = f"file {exc.filename}: {exc.strerror}"
            result.notices.append(f"step '{name}' runs without the cache: {reason}")
            return reason
        inputs.update(found.fingerprints)
        result.notices += [f"step '{name}': {n}" for n in found.notices]
        return None

    # -- hit ----------------------------------------------------------------------------
    def _try_restore(self, name: str, key: str, store: Store, result: StepResult) -> tuple[bool, Any]:
        """Restore the entry under ``key``: (True, cell result) on a hit, (False, None) if not."""
        __tracebackhide__ = True
        start = time.perf_counter()
        try:
            entry = store.get(key)
            if entry is None:
                result.reason = self.why_missed(result)
                return False, None
            failed = self._replay_setup(result)
            if failed:
                result.reason = failed
                return False, None
            payload = store.load(entry, self.shell.user_ns, lazy=self.lazy)
        except (StoreError, RestoreError) as exc:
            # Only a verified failure (size, MAC) forgets the entry: a transient read error
            # (EIO, too many open files) or a class that changed leaves it for later.
            corrupt = isinstance(exc, CorruptEntry)
            what = ("cache entry is corrupt" if corrupt else "cache entry could not be read"
                    if isinstance(exc, StoreError) else "cache entry cannot be restored")
            result.reason = f"{what} ({exc})"
            if not self.verbose:  # verbose: the miss line already says it, once
                result.notices.append(f"step '{name}': {what} ({exc}); re-running it")
            if corrupt:
                _forget(store, key)
            return False, None
        drawn = payload.get("rng")
        if drawn is not None:
            now = rng.digests(rng.states())
            if any(now.get(name) != digest for name, digest in drawn["before"].items()):
                # It drew from a global generator that is now elsewhere (another seed, other
                # draws since): a plain run would give other numbers.
                result.reason = (f"the global random generator ({', '.join(drawn['before'])}) is "
                                 "in another state than when it ran")
                return False, None
        written: list[str] = []
        if payload.get("files"):
            try:  # before any variable is bound: a failure here is a plain miss
                written = files.write_back(payload["files"], os.getcwd(), self.files.hashes)
            except OSError as exc:
                result.reason = f"a file it wrote could not be restored ({exc})"
                result.notices.append(f"step '{name}': {result.reason}; re-running it")
                return False, None
        ns = self.shell.user_ns
        outputs = dict(payload["outputs"])
        for var in payload.get("mutated", ()):
            # Changed in place by the step: change the object the namespace holds in place
            # too, so other references to it (holder = [arr]) see it, as after a real run.
            if var in outputs and var in ns and _assign_in_place(ns[var], outputs[var]):
                del outputs[var]
        ns.update(outputs)
        if drawn is not None:
            rng.restore(drawn["after"])  # where the step left them, as after a plain run
        for var in payload["deleted"]:
            ns.pop(var, None)
        result.status = "cached"
        result.outputs = tuple(payload["outputs"])
        result.deleted = tuple(payload["deleted"])
        result.duration = time.perf_counter() - start
        result.saved = max(0.0, entry.duration - result.duration)
        result.output_sizes = dict(entry.output_sizes)
        self._finish(result)
        if self.verbose:
            print(_restored_line(result, payload["outputs"]))
            if written:
                print(f"[resumable_nb] step '{name}' wrote back {', '.join(written)}")
        capture.replay(self.shell, payload["events"])
        if "value" in payload:
            return True, payload["value"]
        shown = payload.get("result")
        return True, (_Replayed(*shown) if shown is not None else None)

    def _replay_setup(self, result: StepResult) -> str | None:
        """Run the step's session-setup magics (``%matplotlib nbagg``) as a plain run would,
        before its outputs are loaded (a restored figure joins the backend they select);
        why not, if one fails (the step then runs)."""
        if "%" not in result.source:
            return None
        magics = setup_magics.setup_magics(self.shell.transform_cell(result.source))
        try:
            setup_magics.replay(self.shell, magics)
        except Exception as exc:  # noqa: BLE001 - the step runs and shows the error itself
            return f"its setup magics could not be replayed ({type(exc).__name__}: {exc})"
        return None

    def why_missed(self, result: StepResult) -> str:
        """What differs from the step's latest entry, in one line (journal permitting)."""
        journal = self._journal()
        if journal is None:
            return "not in the cache yet"
        try:
            runs, _ = journal.read()
        except (OSError, StoreError):
            return "not in the cache yet"
        previous = why.latest_entry(runs, result.name, other_than=result.key)
        return why.compare(previous, result.source, result.inputs).summary()

    # -- miss ---------------------------------------------------------------------------
    def _run_and_store(self, name: str, body: str, header: str, analysis: CellAnalysis,
                       inputs: dict[str, str], key: str | None, store: Store | None,
                       result: StepResult, opts: StepLine | None = None) -> Any:
        __tracebackhide__ = True
        opts = opts if opts is not None else StepLine(name)
        ns = self.shell.user_ns
        before = {k: id(ns[k]) for k in self._user_names()}
        # The modules it imports again count as read: `import matplotlib; matplotlib.use(...)`
        # changes the notebook's `rcParams` (from pylab import *) as much as a bare read does.
        reimported = [n for n in analysis.bound if isinstance(ns.get(n), types.ModuleType)]
        sharers = self._sharers([*inputs, *reimported], before)
        rng_before = rng.states()
        # Generators the step seeds before it could draw: where they stood is not its input.
        seeded = rng.seeded(ast.parse(self.shell.transform_cell(body)), ns)
        mpl_before = mplstate.snapshot()
        proc_before = procstate.snapshot()
        # Taken before the first attempt only when retries are asked for: its cost is theirs.
        snapshot = retry.Snapshot(ns, inputs, _ABSENT) if opts.retries else None
        attempt = 0
        value: Any = _NOTHING
        watch = rng.Watch(rng.digests(rng_before), ns)  # seeded before any other use?
        try:
            while True:
                attempt += 1
                self._record_start(result)
                start = time.perf_counter()
                with capture.capture(self.shell) as events:
                    try:
                        with self.files.watch():  # which files it opens, and how (files.py)
                            value = self._execute(body, header)
                        capture.flush_figures()
                    except BaseException as exc:
                        result.status = "failed"
                        result.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                        result.duration = time.perf_counter() - start
                        # KeyboardInterrupt, SystemExit: never retried (only Exception is).
                        retryable = (snapshot is not None and isinstance(exc, Exception)
                                     and attempt <= opts.retries)
                        why_not = (snapshot.reset(ns, Fingerprinter(ns, follow_globals=False))
                                   if retryable and snapshot is not None else "")
                        if not retryable or why_not:
                            if why_not:
                                result.notices.append(f"step '{name}' attempt {attempt} failed and is "
                                                      f"not retried: {why_not}")
                            self._finish(result)
                            raise
                        self._finish(dataclasses.replace(result, notices=[
                            *result.notices, f"step '{name}' attempt {attempt} of {opts.retries + 1} "
                            f"failed ({result.error}); retrying"
                            + (f" in {opts.retry_delay:g} s" if opts.retry_delay else "")]))
                        result.status, result.error, result.notices = "ran", "", []
                        time.sleep(opts.retry_delay)
                        continue
                break
        finally:
            watch.close(ns)
        seeded |= watch.seeded
        result.duration = time.perf_counter() - start
        named, self._named_files = self._named_files, None
        self.files.forget_recorded()
        if named is not None and named[0] == name:
            try:
                guarded = self._function_guarded or files.guards_tree(
                    ast.parse(self.shell.transform_cell(body)))
            except SyntaxError:
                guarded = True
            self.files.record_made(name, named[1], guarded=guarded)
        products: list[files.Product] = []
        if opts.writes:
            try:
                products = files.collect_products(name, opts.writes, os.getcwd(), self.files.hashes,
                                                  contents=key is not None and store is not None)
            except (StepUsageError, OSError) as exc:
                result.status = "failed"
                result.error = str(exc)[:300]
                self._finish(result)
                raise
        if key is not None and store is not None:  # files it only wrote: written back on a hit
            declared = {p.path for p in products}
            products += [p for p in self.files.written_products(name, os.getcwd()) if p.path not in declared]
        after = self._user_names()
        outputs = {k for k in after if before.get(k) != id(ns[k])} | (analysis.bound & after)
        # Changed in place: the same object as before, with other content (lst.append(x),
        # arr += 1). Restored in place on a hit, so that other references see the change.
        same_object = {k for k in after if k in before and before[k] == id(ns[k])}
        # Also what changed through a view or a shared object (aliases.py): a plain run
        # leaves `base` changed after `sub[0] = 99`, so a hit must too.
        mutated = self._mutated(inputs, same_object) | self._mutated(sharers, same_object)
        outputs |= mutated
        deleted = tuple(sorted(set(before) - after))
        result.outputs = tuple(sorted(outputs))
        result.deleted = deleted
        if value is _NOTHING or _quiet(body):
            value = None
        shown = None
        if value is not None:
            data, metadata = self.shell.display_formatter.format(value)
            shown = (capture._plain(data), capture._plain(metadata))
        payload: dict[str, Any] = {"outputs": {k: ns[k] for k in result.outputs}, "deleted": deleted,
                   "events": list(events), "result": shown, "mutated": sorted(mutated)}
        styled = mplstate.changed(mpl_before)
        if styled:  # first: unpickled before the figures, on a hit and by %resume (mplstate.py)
            payload = {"mpl": mplstate.Changes(styled), **payload}
        made = procstate.changed(proc_before)
        if made:  # first of all: the folder and sys.path its outputs' classes may come from
            payload = {"proc": procstate.Changes(made), **payload}
        rng_after = rng.states()
        drew = rng.moved(rng_before, rng_after, seeded)
        if drew:  # a hit must find them where they were, and leave them as the step did
            drew_from = rng.digests(rng_before)
            payload["rng"] = {"before": {n: drew_from[n] for n in drew
                                         if n in drew_from and n not in seeded},
                              "after": {n: rng_after[n] for n in drew}}
        if products:
            payload["files"] = files.products_to_payload(products)
        if value is not None:
            # The value itself, so that on a hit `_`, `__` and Out[n] hold what a plain run
            # leaves there (not a display wrapper); pickled with the outputs, so `df` as the
            # last expression comes back as the same object as the output `df`.
            payload["value"] = value
        if key is not None and store is not None:
            self._store_payload(name, key, store, payload, result)
        if not result.output_sizes:
            result.output_sizes = output_sizes(payload)
        self._finish(result)
        return value

    def run_plain(self, source: str) -> Any:
        """Run a plain (non-step) cell's code like a cell: for ``%resume --run``."""
        __tracebackhide__ = True
        value = self._execute(source, "")
        capture.flush_figures()
        return None if value is _NOTHING or _quiet(source) else value

    def _execute(self, body: str, header: str) -> Any:
        """Run the body in the user namespace like a cell; return its last expression's value."""
        __tracebackhide__ = True
        shell = self.shell
        raw = f"{header}\n{body}" if header else body
        filename = shell.compile.cache(raw, _cell_number(shell))
        tree = ast.parse(shell.transform_cell(body))
        if header:
            ast.increment_lineno(tree, header.count("\n") + 1)
        try:
            return self._execute_tree(tree, filename)
        except BaseException as exc:
            _show_from(shell, exc, filename)
            raise

    def _execute_tree(self, tree: ast.Module, filename: str) -> Any:
        __tracebackhide__ = True
        shell = self.shell
        last = tree.body[-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        stmts = tree.body[:-1] if last is not None else tree.body
        # One statement at a time, through the shell's compiler, as IPython runs a cell: the
        # compile unit changes the bytecode (3.11: a method call on a name imported in the same
        # unit), so a function defined in a step would fingerprint differently from the same
        # function defined in a plain cell; and a __future__ import applies from the next
        # statement on, as in a cell. Top-level await compiles to a coroutine, run on IPython's
        # loop (resumable_nb._await), as IPython does with the same flag.
        with shell.compile.extra_flags(ast.PyCF_ALLOW_TOP_LEVEL_AWAIT):
            for stmt in stmts:
                code = shell.compile(ast.Module(body=[stmt], type_ignores=[]), filename, "exec")
                run_code(shell, code, shell.user_global_ns, shell.user_ns)
        if last is None:
            return _NOTHING
        expression = ast.Expression(body=last.value)
        with shell.compile.extra_flags(ast.PyCF_ALLOW_TOP_LEVEL_AWAIT):
            code = shell.compile(expression, filename, "eval")
        return run_code(shell, code, shell.user_global_ns, shell.user_ns)

    def _sharers(self, inputs: Iterable[str], names: Iterable[str]) -> dict[str, str]:
        """Fingerprints of the variables the step could change through its inputs."""
        ns = self.shell.user_ns
        fper = Fingerprinter(ns, follow_globals=False)
        found = {}
        for name in sorted(aliases.candidates(ns, inputs, names)):
            try:
                found[name] = fper.hash(ns[name])
            except Unfingerprintable:
                continue  # cannot tell whether it changed; it is not an input either
        return found

    def _mutated(self, inputs: dict[str, str], candidates: set[str]) -> set[str]:
        """Inputs that still exist and whose content changed: mutated in place."""
        ns = self.shell.user_ns
        fper = Fingerprinter(ns, follow_globals=False)  # as the inputs were fingerprinted
        changed = set()
        for var, before in inputs.items():
            if var not in candidates or before == _ABSENT:
                continue
            try:
                if fper.hash(ns[var]) != before:
                    changed.add(var)
            except Unfingerprintable:
                changed.add(var)
        return changed

    def _store_payload(self, name: str, key: str, store: Store, payload: dict[str, Any],
                       result: StepResult) -> None:
        ns = self.shell.user_ns
        try:
            entry = store.put(key, name, payload, ns, outputs=result.outputs, deleted=result.deleted,
                              duration=result.duration,
                              extra={"reason": result.reason, "rng": rng.summary(payload.get("rng"))},
                              read=[k for k in result.inputs if ":" not in k])
            result.stored = True
            result.output_sizes = dict(entry.output_sizes)
        except StoreError as exc:
            result.notices.append(f"step '{name}' ran but was not cached: {exc}")
        except Exception as exc:  # noqa: BLE001 - a pickling failure: find the culprit
            if "value" in payload:  # an unpicklable last expression: keep its display only
                del payload["value"]
                return self._store_payload(name, key, store, payload, result)
            culprit = _find_unstorable(payload["outputs"], ns)
            detail = str(culprit) if culprit else f"{type(exc).__name__}: {exc}"
            result.notices.append(f"step '{name}' ran but was not cached: output {detail}")

    def _record_start(self, result: StepResult) -> None:
        journal = self._journal()
        if journal is not None:
            try:
                journal.step_started(result.name, result.key, result.source, result.line)
            except (OSError, StoreError) as exc:  # a full disk, or a planted link: never the step's error
                result.notices.append(f"the run journal could not be written ({_why(exc)})")

    def _finish(self, result: StepResult) -> None:
        """Record the step's end: in the journal (a computed step is complete only once this
        record is durable), in the history, and tell the user what needs telling."""
        journal = self._journal()
        if journal is not None:
            status = result.status
            try:
                journal.step_finished(
                    result.name, status, key=result.key if result.stored or status == "cached" else None,
                    duration=result.duration, outputs=result.output_sizes, deleted=result.deleted,
                    error=result.error, saved=result.saved, reason=result.reason,
                    inputs=result.inputs,
                    started=(result.key, result.source) if status == "cached" else None,
                    line=result.line)
            except (OSError, StoreError) as exc:
                result.notices.append(f"the run journal could not be written ({_why(exc)})")
        store = self._store() if self.files.hashes.dirty else None
        if store is not None:
            self.files.save(store.root, store.journal_key)
        self.history.append(result)
        for text in result.notices:
            self._notice(text)


class _Nothing:
    """No last expression (distinct from an expression that evaluated to None)."""


_NOTHING = _Nothing()


def _module_entries(imports: Iterable[str]) -> dict[str, str]:
    """``{"module:helper2": short digest}`` for the identities of the modules a step imports
    (``helper2@...``, ``numpy==2.4.6``): shown by a miss reason, not part of the key twice."""
    return {f"module:{re.split('==|@', identity, maxsplit=1)[0]}":
            hashlib.sha256(identity.encode()).hexdigest()[:16] for identity in imports}


def _frame_reads(analysis: CellAnalysis, ns: Any) -> dict[str, str]:
    """Names a library will look up in the step's frame (``df.query('a > @thr')``), with
    their labels; for a string held in an input (``df.query(q)``), from its value now."""
    frames = dict(analysis.frames)
    for var, method, receiver in analysis.frame_strings:
        text = ns.get(var)
        kind = frame_kind(method, receiver, text) if isinstance(text, str) else None
        for name, shown in (frame_names(text, kind) if kind and isinstance(text, str) else {}).items():
            frames.setdefault(name, f"{receiver}.{method}:{shown}")
    return frames


def _quiet(body: str) -> bool:
    """A trailing ';' hides the last expression, as in a normal cell."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(body).readline))
    except (tokenize.TokenError, SyntaxError):
        return False
    skip = {tokenize.ENDMARKER, tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT,
            tokenize.INDENT, tokenize.DEDENT}
    for token in reversed(tokens):
        if token.type in skip:
            continue
        return token.type == tokenize.OP and token.string == ";"
    return False


def _assign_in_place(current: Any, new: Any) -> bool:
    """Make ``current`` equal to ``new`` without replacing it; False where we cannot."""
    t = type(current)
    if type(new) is not t:
        return False
    if t is list or t is bytearray:
        current[:] = new
    elif t is dict or t is set:
        current.clear()
        current.update(new)
    elif t.__module__ == "numpy" and t.__name__ == "ndarray":
        if current.shape != new.shape or current.dtype != new.dtype or not current.flags.writeable:
            return False
        current[...] = new
    elif (hasattr(current, "__dict__") and not hasattr(t, "__slots__")
          and t.__module__ == "__main__" and type(current.__dict__) is dict):
        current.__dict__.clear()
        current.__dict__.update(new.__dict__)
    else:
        return False
    return True


def _find_unstorable(outputs: dict[str, Any], ns: MutableMapping[str, Any]) -> Unstorable | None:
    for var in sorted(outputs):
        try:
            serialize.storable_check(var, outputs[var], ns)
        except Unstorable as exc:
            return exc
    return None


_canonical = functools.lru_cache(maxsize=256)(StepLine.__str__)
"""A step line's canonical text (journaled with every execution, hits included), computed once."""


def _cell_number(shell: Any) -> int:
    """The execution count of the cell running now, as IPython names it (``Cell In[n]``): with
    ``store_history`` IPython has already counted it, so ``shell.execution_count`` is the next
    cell's number by then; the result it fills in for this cell holds the right one."""
    result = getattr(getattr(shell, "displayhook", None), "exec_result", None)
    number = getattr(result, "execution_count", None)
    return number if isinstance(number, int) else int(shell.execution_count)


def _show_from(shell: Any, exc: BaseException, filename: str) -> None:
    """Make IPython show ``exc`` from the step's own code down, as it shows an error in a plain
    cell: not from the ``run_cell_magic`` line of the cell above it, with a note of hidden
    frames between them. Through IPython's protocol for an exception that renders its own
    traceback (``_render_traceback_``: IPython calls it to show the error, then to store it
    in the history), for this cell only: the same object raised again in a later cell shows
    in full."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != filename:
        tb = tb.tb_next
    if tb is None or hasattr(exc, "_render_traceback_") or not hasattr(shell, "InteractiveTB"):
        return
    cell = shell.execution_count

    def render() -> list[str]:
        if shell.execution_count != cell:  # a later cell: this object's traceback is another
            with contextlib.suppress(AttributeError):
                del exc._render_traceback_  # type: ignore[attr-defined]
            return list(shell.InteractiveTB.structured_traceback(type(exc), exc, exc.__traceback__))
        return list(shell.InteractiveTB.structured_traceback(type(exc), exc, tb, tb_offset=0))

    with contextlib.suppress(AttributeError, TypeError):
        exc._render_traceback_ = render  # type: ignore[attr-defined]


def _why(exc: BaseException) -> str:
    return (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)


def _forget(store: Store, key: str) -> None:
    try:
        store.delete(key)
    except Exception:  # noqa: BLE001, S110 - the entry is ignored either way
        pass


def _restored_line(result: StepResult, outputs: dict[str, Any], most: int = 5) -> str:
    """One line on a hit: the step, the time saved, and its data outputs (imported modules,
    functions and classes are left out; past ``most`` names, how many more)."""
    data = [n for n in result.outputs if not _is_code(outputs.get(n))]
    shown = ", ".join(data[:most]) or "no data outputs"
    if len(data) > most:
        shown += f" and {len(data) - most} more"
    return (f"[resumable_nb] step '{result.name}' restored from cache, {_seconds(result.saved)} "
            f"saved: {shown}")


def _miss_line(result: StepResult) -> str:
    """One line before a step computes: why it was not a hit (the reason the journal records)."""
    why = result.reason or "not in the cache yet"
    if why == "--force":
        why = "re-run on request (--force)"
    return f"[resumable_nb] step '{result.name}' runs: {why}"


def _is_code(value: Any) -> bool:
    import types

    return isinstance(value, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type))


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s >= 0.1 else f"{s * 1000:.0f} ms"

