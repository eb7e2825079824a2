"""Files as step inputs and products: the outside world a step reads and writes. Pure: no IPython.

Inputs (part of the key, see docs/invalidation.md):

- every string literal in the step's code, and every ``Path(...)`` / ``os.path.join(...)`` /
  ``Path(...) / "x"`` built from literals only, that names an existing file or directory
  relative to the working directory (or absolute);
- every input variable holding a ``str`` or an ``os.PathLike`` that does;
- the files matching ``--reads`` globs (their contents and the set of matches).

A file counts by the BLAKE3 hash of its content; a directory by its sorted listing and the
hash of every file below it (links followed, each directory once). The working directory
counts when a relative path is used. Never by path or date alone: a stale hit is the worst bug.

Hashes are remembered by ``(device, inode, size, mtime_ns, ctime_ns)`` (:class:`FileHashes`):
an unchanged 10 GB file costs a ``stat``. A file modified within the last two seconds before
it was hashed is not remembered (its mtime could repeat for a second write in the same
clock tick), so it is hashed again next time.

Products (``--writes``): the files matching the globs after the step ran are stored with the
entry and written back on a hit, atomically, when absent or different.

Files a step only writes: a named file the step created or changed, which it opened (through
Python's ``open`` / ``os.open``, seen by an audit hook) for writing and never for reading, is
a product too: a plain run overwrites it whatever it holds, so its content is not an input of
the step's next run (a later step rewriting it, ``savetxt`` twice, made the first step re-run
every time), and a hit writes back what the step wrote (the step after it reads that, as in a
plain run). Up to :data:`WRITE_BACK_LIMIT` bytes; a bigger file stays an input. A step that
reads the file in any way Python's ``open`` sees keeps it as an input.
"""

from __future__ import annotations

import ast
import glob
import mmap
import os
import stat
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3

from .errors import StepUsageError

__all__ = ["FileHashes", "FileInputs", "Product", "StepFiles", "collect_products", "describe",
           "file_inputs", "literal_bindings", "literal_paths", "path_strings", "resolve_paths", "write_back"]

_MAX_LITERAL = 4096
_BIG = 1 << 30  # hashing more than this at once is said, never skipped
_MANY = 10_000  # a directory walk beyond this many entries is said, never cut short
_RACY_NS = 2_000_000_000
_SMALL = 1 << 20
_GLOB = frozenset("*?[")
_PATH_CALLS = frozenset({"Path", "PurePath", "PosixPath", "WindowsPath", "join"})
WRITE_BACK_LIMIT = 64 << 20  # a file a step only writes, stored to be written back on a hit


# -- which paths a step's code names ---------------------------------------------------------
def literal_paths(tree: ast.AST) -> frozenset[str]:
    """String literals, and paths built from literals only, that may name files.

    ``Path("data") / "x.csv"`` gives ``data/x.csv`` (not ``data``: the whole folder would be
    hashed for one file of it); an f-string or a path computed at run time gives nothing
    (docs/limitations.md: declare it with ``--reads``).
    """
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        composed = _composed(node)
        if composed is not None:
            found.add(composed)
            return
        if isinstance(node, ast.JoinedStr):  # an f-string's pieces are not paths
            for value in node.values:
                if isinstance(value, ast.FormattedValue):
                    visit(value.value)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return frozenset(p for p in found if _plausible(p))


def literal_bindings(body: list[ast.stmt]) -> dict[str, str]:
    """Names a step binds once, at top level, to a path built from literals (``DATA =
    Path("data")``, ``SRC = "in.csv"``): what a path built from them later in the step
    (``DATA / "x.csv"``) names (:func:`resolve_paths`)."""
    stores: dict[str, int] = {}
    for node in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            stores[node.id] = stores.get(node.id, 0) + 1
    found: dict[str, str] = {}
    for stmt in body:
        if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name) and stores.get(stmt.targets[0].id) == 1):
            composed = _composed(stmt.value)
            if composed is not None and _plausible(composed):
                found[stmt.targets[0].id] = composed
    return found


def _composed(node: ast.AST) -> str | None:
    """The path an expression of literals builds, or None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Call) and not node.keywords and node.args:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if name in _PATH_CALLS:
            parts = [_composed(a) for a in node.args]
            if all(p is not None for p in parts):
                return os.path.join(*parts)  # type: ignore[arg-type]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        left, right = _composed(node.left), _composed(node.right)
        if left is not None and right is not None and isinstance(node.left, (ast.Call, ast.BinOp)):
            return os.path.join(left, right)  # "a" / "b" is a TypeError; Path("a") / "b" a path
    return None


def resolve_paths(templates: Iterable[tuple[tuple[str, ...], ...]], values: Mapping[str, Any]
                  ) -> set[str]:
    """The paths that templates (:func:`resumable_nb.fingerprint.path_templates`) build from
    the ``str`` / ``Path`` values their names hold now: ``DATA / 'd.txt'`` with ``DATA =
    Path('data')`` gives ``data/d.txt``. A name holding anything else drops the template."""
    out: set[str] = set()
    for template in templates:
        path: str | None = None
        concat = False
        for part in template:
            if part[0] == "+":
                concat = True
                continue
            value: Any = part[1]
            if part[0] == "n":
                value = values.get(part[1])
            elif part[0] == "k":
                holder = values.get(part[1])
                value = holder.get(part[2]) if isinstance(holder, dict) else None
            text = _path_text(value)
            if text is None:
                path = None
                break
            path = text if path is None else (path + text if concat else os.path.join(path, text))
            concat = False
        if path is not None and _plausible(path):
            out.add(path)
    return out


def _path_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        text = os.fspath(value)
        return text if isinstance(text, str) else None
    return None


_CONTAINERS = (list, tuple, set, frozenset, dict)
MAX_HELD_PATHS = 1_000  # strings inside an input's containers looked at as paths
_MAX_HELD_ITEMS = 10_000  # items walked to find them


def path_strings(values: Iterable[Any], limit: int = MAX_HELD_PATHS) -> set[str]:
    """``str`` / ``Path`` values held by ``values`` themselves or inside their lists, tuples,
    sets and dicts (``cfg['path']``, ``for p in paths: open(p)``), up to ``limit`` strings
    looked at and 10,000 items walked. In a container, only a string that looks like a path
    (it has a ``/`` or a ``.``) is taken: a list of words costs no ``stat``."""
    out: set[str] = set()
    seen: set[int] = set()
    budget = [_MAX_HELD_ITEMS, limit]

    def walk(value: Any, held: bool) -> None:
        if budget[0] <= 0 or budget[1] <= 0:
            return
        budget[0] -= 1
        text = _path_text(value)
        if text is not None:
            budget[1] -= held
            if _plausible(text) and (not held or "/" in text or "." in text or os.sep in text):
                out.add(text)
            return
        if not isinstance(value, _CONTAINERS) or id(value) in seen:
            return
        seen.add(id(value))
        items = value.items() if isinstance(value, dict) else value
        for item in items:
            if isinstance(value, dict):
                walk(item[0], True)
                walk(item[1], True)
            else:
                walk(item, True)

    for value in values:
        walk(value, False)
    return out


def _plausible(text: str) -> bool:
    return 0 < len(text) <= _MAX_LITERAL and not any(c in text for c in "\0\n\r")


# -- content hashes, remembered by stat ------------------------------------------------------
def _signature(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class FileHashes:
    """Content hashes of files, remembered by stat signature (one per kernel, in memory, and
    saved signed next to the journal by the runner so a new kernel costs a ``stat`` too)."""

    def __init__(self, limit: int = 20_000) -> None:
        self._memo: OrderedDict[str, tuple[tuple[int, ...], str]] = OrderedDict()
        self._limit = limit
        # step -> {absolute path: digest}: files the step itself created or changed, as it left
        # them. They are its products, not its inputs (see file_inputs).
        self.made: dict[str, dict[str, str]] = {}
        # step -> {absolute path: {the literal naming it: what it put in the key, or None}}: the
        # made files the step only wrote. They keep the key they had (see file_inputs).
        self.write_only: dict[str, dict[str, dict[str, str | None]]] = {}
        self.dirty = False
        self.hashed_bytes = 0  # bytes read since the last reset: said when big

    def digest(self, path: str, st: os.stat_result | None = None) -> str:
        """The BLAKE3 hex digest of the regular file at ``path`` (absolute).

        :raises OSError: it cannot be read.
        """
        st = st if st is not None else os.stat(path)
        sig = _signature(st)
        known = self._memo.get(path)
        if known is not None and known[0] == sig:
            return known[1]
        started = time.time_ns()
        digest = _hash_file(path, st.st_size)
        self.hashed_bytes += st.st_size
        after = os.stat(path)
        if _signature(after) == sig and st.st_mtime_ns < started - _RACY_NS:
            self._memo[path] = (sig, digest)
            self._memo.move_to_end(path)
            self.dirty = True
            if len(self._memo) > self._limit:
                self._memo.popitem(last=False)
        return digest

    def to_json(self) -> dict[str, Any]:
        return {"v": 1, "files": {p: [list(sig), d] for p, (sig, d) in self._memo.items()},
                "made": self.made, "write_only": self.write_only}

    def load(self, data: Mapping[str, Any]) -> None:
        """Take remembered hashes saved by :meth:`to_json` (a signed file: ours)."""
        files = data.get("files") if data.get("v") == 1 else None
        if not isinstance(files, dict):
            return
        made = data.get("made")
        if isinstance(made, dict):
            for step, paths in made.items():
                if isinstance(paths, dict):
                    self.made.setdefault(str(step), {}).update(
                        {str(p): str(d) for p, d in paths.items()})
        write_only = data.get("write_only")
        if isinstance(write_only, dict):
            for step, paths in write_only.items():
                if isinstance(paths, dict):
                    self.write_only.setdefault(str(step), {}).update(
                        {str(p): {str(t): (None if f is None else str(f)) for t, f in labels.items()}
                         for p, labels in paths.items() if isinstance(labels, dict)})
        for path, value in files.items():
            try:
                sig, digest = value
                self._memo.setdefault(str(path), (tuple(int(x) for x in sig), str(digest)))
            except (TypeError, ValueError):
                continue


def _hash_file(path: str, size: int) -> str:
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    if size >= _SMALL:
        hasher.update_mmap(path)  # zero-copy, both cores
    else:
        with open(path, "rb") as f:
            hasher.update(f.read())
    return hasher.hexdigest()


# -- inputs ------------------------------------------------------------------------------------
@dataclass(slots=True)
class FileInputs:
    """The key entries of a step's files, and what to say about them."""

    fingerprints: dict[str, str] = field(default_factory=dict)  # "file:data.csv" -> fingerprint
    notices: list[str] = field(default_factory=list)


def file_inputs(candidates: Iterable[str], reads: Iterable[str], writes: Iterable[str],
                hashes: FileHashes, cwd: str, exclude: Iterable[str] = (),
                made: Mapping[str, str] | None = None,
                write_only: Mapping[str, Mapping[str, str | None]] | None = None) -> FileInputs:
    """The fingerprints of the files a step reads.

    ``candidates``: literal paths and input variables' paths; those naming nothing are
    dropped. ``reads``: ``--reads`` globs, always keyed (an empty match set too). ``writes``:
    ``--writes`` globs, keyed as declared; a candidate they match is a product, not an input.
    ``exclude``: folders never hashed (the cache folder). ``made``: files this step created
    or changed when it last ran, as it left them: still so, they are its products, not its
    inputs (``np.save("m.npy", m)``, ``%%file helper.py``: keying on them would make the step
    miss once more on every run that follows its first). A folder named in the code is not an
    input either: notebooks name output folders far more than they list input folders, and a
    folder several steps write into would make every one of them miss (`--reads 'd/*'`
    declares a folder's files). ``write_only``: the made files it only wrote (opened for
    writing, never for reading): a plain run overwrites them whatever they hold, so they keep
    what they put in the key when the step last ran, whoever changed them since (a hit writes
    back the step's own version).

    :raises OSError: a file that exists cannot be read (the step then runs uncached).
    """
    out = FileInputs()
    hashes.hashed_bytes = 0
    skip = {os.path.realpath(p) for p in exclude}
    cwd_real = os.path.realpath(cwd)
    products = {os.path.realpath(os.path.join(cwd, m)) for w in writes for m in _glob(w, cwd)}
    # A folder the products go in is made by the step too: the products are its outputs, not
    # inputs (they are restored on a hit), and a folder holding them is not an input either.
    holders = {os.path.realpath(os.path.join(cwd, parent)) for w in writes
               for parent in Path(w).parents if not any(c in str(parent) for c in _GLOB)}
    holders -= {cwd_real, os.path.dirname(cwd_real)}
    products |= {os.path.realpath(os.path.join(cwd, w)) for w in writes
                 if not any(c in w for c in _GLOB)}
    relative = False
    for text in sorted(set(candidates)):
        full = os.path.join(cwd, text)
        try:
            st = os.stat(full)
        except (OSError, ValueError):
            continue  # names nothing (most literals): not a file input
        real = os.path.realpath(full)
        if stat.S_ISDIR(st.st_mode):
            continue
        kept = (write_only or {}).get(real, {})
        if text in kept:
            if kept[text] is not None:
                relative |= not os.path.isabs(text)
                out.fingerprints[f"file:{text}"] = kept[text]  # type: ignore[assignment]
            continue
        if made and real in made and stat.S_ISREG(st.st_mode) and hashes.digest(real, st) == made[real]:
            continue  # this step's own product, untouched since
        if real in products or real in holders or _inside(real, skip) or _is_ancestor(real, cwd_real):
            # The working folder itself (or "/", ".."): it holds the notebook and the cache,
            # so it would change on every save; see docs/limitations.md.
            continue
        relative |= not os.path.isabs(text)
        out.fingerprints[f"file:{text}"] = _fingerprint(full, st, hashes, skip | products, text,
                                                        out.notices)
    for pattern in sorted(set(reads)):
        relative |= not os.path.isabs(pattern)
        matches = [m for m in _glob(pattern, cwd)
                   if not _inside(os.path.realpath(os.path.join(cwd, m)), skip)]
        material = []
        for m in matches:
            full = os.path.join(cwd, m)
            fp = _fingerprint(full, os.stat(full), hashes, skip | products, m, out.notices)
            material.append(f"{m}\0{fp}")
        out.fingerprints[f"reads:{pattern}"] = "glob:" + _blake("\n".join(material))
    for pattern in sorted(set(writes)):
        relative |= not os.path.isabs(pattern)
        out.fingerprints[f"writes:{pattern}"] = "declared"  # a hit must restore these files
    if relative and out.fingerprints:
        out.fingerprints["cwd:"] = cwd  # relative paths mean another file in another folder
    if hashes.hashed_bytes >= _BIG:
        out.notices.append(f"hashed {hashes.hashed_bytes / 2**30:.1f} GiB of input files to "
                           "fingerprint them; while they are unchanged, later checks cost a stat")
    return out


def _fingerprint(full: str, st: os.stat_result, hashes: FileHashes, skip: set[str], label: str,
                 notices: list[str]) -> str:
    if stat.S_ISREG(st.st_mode):
        return "file:" + hashes.digest(os.path.abspath(full), st)
    if stat.S_ISDIR(st.st_mode):
        count = [0]
        listing = _walk(full, hashes, skip, set(), count)
        if count[0] > _MANY:
            notices.append(f"folder {label} has {count[0]} entries: every file in it was "
                           "fingerprinted (a stat each while unchanged)")
        return "dir:" + _blake(listing)
    # A device, FIFO or socket: reading it could block or never end; it counts by its kind.
    return f"special:{stat.S_IFMT(st.st_mode)}"


def _walk(folder: str, hashes: FileHashes, skip: set[str], seen: set[tuple[int, int]],
          count: list[int]) -> str:
    st = os.stat(folder)
    if (st.st_dev, st.st_ino) in seen:
        return "cycle"
    seen.add((st.st_dev, st.st_ino))
    lines = []
    for name in sorted(os.listdir(folder)):
        count[0] += 1
        full = os.path.join(folder, name)
        if _inside(os.path.realpath(full), skip):
            continue
        try:
            est = os.stat(full)
        except FileNotFoundError:  # a dangling link: its target string counts
            lines.append(f"{name}\0link:{os.readlink(full)}")
            continue
        if stat.S_ISDIR(est.st_mode):
            lines.append(f"{name}/\0{_blake(_walk(full, hashes, skip, seen, count))}")
        elif stat.S_ISREG(est.st_mode):
            lines.append(f"{name}\0{hashes.digest(os.path.abspath(full), est)}")
        else:
            lines.append(f"{name}\0special:{stat.S_IFMT(est.st_mode)}")
    return "\n".join(lines)


def _glob(pattern: str, cwd: str) -> list[str]:
    """Matches of ``pattern``, sorted, files and folders, relative to ``cwd`` unless the pattern
    is absolute (``**`` recursive; a leading dot is matched only explicitly, as in a shell)."""
    if not any(c in pattern for c in _GLOB):
        return [pattern] if os.path.lexists(os.path.join(cwd, pattern)) else []
    return sorted(glob.glob(pattern, root_dir=cwd, recursive=True))


def _inside(path: str, folders: set[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


def _is_ancestor(path: str, of: str) -> bool:
    return of == path or of.startswith(path.rstrip(os.sep) + os.sep)


def _blake(text: str) -> str:
    return blake3.blake3(text.encode("utf-8", "surrogatepass")).hexdigest()


# -- products ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Product:
    """A file a step wrote, as stored with its entry."""

    path: str  # relative to the working directory, or absolute
    mode: int
    digest: str
    content: Any  # bytes, or a buffer (a mapping of the file, pickled out of band)


def collect_products(step: str, patterns: Iterable[str], cwd: str, hashes: FileHashes,
                     *, contents: bool = True) -> list[Product]:
    """The files matching ``--writes`` after the step ran (folders: the files below them).

    ``contents``: read them (mapped, not copied); else only check they exist.

    :raises StepUsageError: a pattern matches no file; the message names it.
    """
    products: dict[str, Product] = {}
    for pattern in sorted(set(patterns)):
        matches = _glob(pattern, cwd)
        files = []
        for m in matches:
            full = os.path.join(cwd, m)
            if os.path.isdir(full):
                files += [os.path.relpath(os.path.join(root, f), cwd) if not os.path.isabs(m)
                          else os.path.join(root, f)
                          for root, _, names in os.walk(full) for f in sorted(names)]
            elif os.path.isfile(full):
                files.append(m)
        if not files:
            raise StepUsageError(f"step '{step}' declares --writes {pattern!r} but no such file "
                                 "exists after it ran; nothing was stored (fix the pattern or "
                                 "the code)")
        for rel in files:
            if rel in products:
                continue
            full = os.path.join(cwd, rel)
            st = os.stat(full)
            content: Any = b""
            if contents:
                content = _read_mapped(full, st.st_size)
            products[rel] = Product(rel, stat.S_IMODE(st.st_mode), hashes.digest(os.path.abspath(full), st),
                                    content)
    return [products[k] for k in sorted(products)]


def _read_mapped(path: str, size: int) -> Any:
    with open(path, "rb") as f:
        if size < _SMALL:
            return f.read()
        # Pickled out of band: written straight from the page cache into the payload file.
        import pickle

        return pickle.PickleBuffer(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))


def products_to_payload(products: list[Product]) -> list[tuple[str, int, str, Any]]:
    return [(p.path, p.mode, p.digest, p.content) for p in products]


def write_back(stored: Iterable[Any], cwd: str, hashes: FileHashes) -> list[str]:
    """Write the stored products that are absent or different; return their paths.

    Each goes to a temp file in its target folder, fsynced, then renamed over the target:
    a crash leaves the old file or the new one, never half of one.

    :raises OSError: a folder cannot be made or a file cannot be written.
    """
    written = []
    for path, mode, digest, content in stored:
        # Through the links as they are now, as a plain run's open writes (replacing a link
        # by a file would cut it; writing its old target would change another file).
        target = os.path.realpath(os.path.join(cwd, path))
        data = memoryview(content).cast("B")
        try:
            st = os.stat(target)
            if (stat.S_ISREG(st.st_mode) and st.st_size == data.nbytes
                    and hashes.digest(os.path.abspath(target), st) == digest):
                continue
        except FileNotFoundError:
            pass
        folder = os.path.dirname(os.path.abspath(target))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".rnb-part")
        try:
            done = 0
            while done < data.nbytes:
                done += os.write(fd, data[done:done + (1 << 24)])
            os.fchmod(fd, mode)
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(tmp, target)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(path)
    return written


# -- the runner's side -------------------------------------------------------------------------
class StepFiles:
    """One kernel's file checks: the remembered hashes, saved signed in the cache folder."""

    SAVED_AS = "file-hashes.json"  # next to the journal, signed with the journal key

    def __init__(self) -> None:
        self.hashes = FileHashes()
        self._loaded: str | None = None
        self.opened = Opened()  # what the step being run opened (watch)
        self._keyed: tuple[str, dict[str, str]] = ("", {})  # the last step's file key entries
        self._texts: dict[str, list[str]] = {}  # the literals naming each path of the last snapshot
        self._recorded = ""  # the step record_made last ran for

    def open(self, root: Path, key: bytes) -> None:
        """Take the hashes a previous kernel saved under ``root`` (once per root)."""
        if self._loaded == str(root):
            return
        self._loaded = str(root)
        from .journal import read_signed

        data = read_signed(root / "journal" / self.SAVED_AS, key)
        if data is not None:
            self.hashes.load(data)

    def save(self, root: Path, key: bytes) -> None:
        """Save the hashes when some were added (best effort: they are only a shortcut)."""
        if not self.hashes.dirty:
            return
        from .errors import StoreError
        from .journal import write_signed

        try:
            write_signed(root, self.SAVED_AS, self.hashes.to_json(), key)
            self.hashes.dirty = False
        except (OSError, StoreError):
            pass

    def inputs(self, paths: Iterable[str], values: Iterable[Any], reads: Iterable[str],
               writes: Iterable[str], exclude: Iterable[str], step: str = "") -> FileInputs:
        """:func:`file_inputs` for literal ``paths`` and input variables' ``values``.

        :raises OSError: an existing file cannot be read.
        """
        found = file_inputs(self.candidates(paths, values), reads, writes, self.hashes, os.getcwd(),
                            exclude, self.hashes.made.get(step), self.hashes.write_only.get(step))
        self._keyed = (step, dict(found.fingerprints))
        return found

    @contextmanager
    def watch(self) -> Iterator[Opened]:
        """Around one attempt of a step: which files it opens, and how (:func:`watch_opens`)."""
        with watch_opens() as opened:
            self.opened = opened
            yield opened

    @staticmethod
    def candidates(paths: Iterable[str], values: Iterable[Any]) -> set[str]:
        """The paths a step names: literals (and paths built from inputs), and input
        variables holding a str or Path, or holding them in containers (:func:`path_strings`)."""
        return set(paths) | path_strings(values)

    @staticmethod
    def texts(candidates: Iterable[str]) -> dict[str, list[str]]:
        """The literals naming each real path."""
        out: dict[str, list[str]] = {}
        for text in candidates:
            try:
                out.setdefault(os.path.realpath(os.path.join(os.getcwd(), text)), []).append(text)
            except ValueError:
                continue
        return out

    def snapshot(self, candidates: Iterable[str]) -> dict[str, tuple[int, ...] | None]:
        """Before a step runs: the stat signature of each named path (None: not a file)."""
        candidates = set(candidates)
        self._texts = self.texts(candidates)
        out: dict[str, tuple[int, ...] | None] = {}
        for text in candidates:
            full = os.path.realpath(os.path.join(os.getcwd(), text))
            try:
                st = os.stat(full)
            except (OSError, ValueError):
                out[full] = None
                continue
            out[full] = _signature(st) if stat.S_ISREG(st.st_mode) else None
        return out

    def record_made(self, step: str, before: Mapping[str, tuple[int, ...] | None],
                    texts: Mapping[str, Iterable[str]] | None = None, *, guarded: bool = False) -> None:
        """After a step ran: remember the named files it created or changed, as it left them,
        and which of them it only wrote (``texts``: the literals naming each path).
        ``guarded``: its code (or a notebook function it calls) may write only under a
        condition on what is there (:func:`guards_tree`): none is taken as only written."""
        made = self.hashes.made.setdefault(step, {})
        write_only: dict[str, dict[str, str | None]] = {}
        self.hashes.write_only[step] = write_only
        self._recorded = step
        keyed = self._keyed[1] if self._keyed[0] == step else {}
        texts = self._texts if texts is None else texts
        named = {t for ts in texts.values() for t in ts}
        before = dict(before)
        for full in self.opened.written - before.keys():
            # Named by a literal of the step but opened from another folder (os.chdir in the
            # step): created or emptied by the step, so as it left it.
            if self.opened.given.get(full) in named:
                before[full] = None
        for full, sig in before.items():
            try:
                st = os.stat(full)
            except (OSError, ValueError):
                made.pop(full, None)
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            if sig is None or sig != _signature(st):
                made[full] = self.hashes.digest(full, st)
                self.hashes.dirty = True
            if (not guarded and full in made and full in self.opened.written
                    and full not in self.opened.read and st.st_size <= WRITE_BACK_LIMIT and texts):
                write_only[full] = {t: keyed.get(f"file:{t}") for t in texts.get(full, ())}
                self.hashes.dirty = True

    def forget_recorded(self) -> None:
        self._recorded = ""

    def written_products(self, step: str, cwd: str) -> list[Product]:
        """The files ``step`` only wrote, as it left them, to be written back on a hit."""
        out: list[Product] = []
        if self._recorded != step:  # it named no file this time: nothing it wrote is known
            return out
        for full in sorted(self.hashes.write_only.get(step, {})):
            try:
                st = os.stat(full)
                if not stat.S_ISREG(st.st_mode) or st.st_size > WRITE_BACK_LIMIT:
                    continue
                digest = self.hashes.digest(full, st)
                content = _read_mapped(full, st.st_size)
            except OSError:
                continue
            rel = self.opened.as_opened.get(full)
            if rel is None:
                continue  # not opened for writing through Python this time: not known where
            out.append(Product(rel, stat.S_IMODE(st.st_mode), digest, content))
        return out


# -- whether what a step writes may depend on what was there -----------------------------------
# Names that check whether a file is there (or what it is), or catch the error of opening one.
_GUARDS = frozenset({"exists", "lexists", "is_file", "isfile", "is_dir", "isdir", "access", "listdir",
                     "scandir", "iterdir", "glob", "rglob", "iglob", "walk", "stat", "lstat",
                     "FileExistsError", "FileNotFoundError", "IsADirectoryError", "OSError",
                     "IOError", "EnvironmentError", "Exception", "BaseException", "suppress"})


def guards_tree(tree: ast.AST) -> bool:
    """Whether a step's code may write a file only under a condition on what is there: it
    checks a file's existence (``exists``, ``isfile``, ``os.access``, ``listdir``, ``glob``...),
    opens with mode ``'x'``, or handles an exception (``try:``). Then the files it only wrote
    stay inputs (their state before it ran counts): a hit writing its old version back could
    replace a file a plain run leaves alone (``if not p.exists(): p.write_text('default')``)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            return True
        if isinstance(node, ast.Name) and node.id in _GUARDS:
            return True
        if isinstance(node, ast.Attribute) and node.attr in _GUARDS:
            return True
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _exclusive(node.value):
            return True
    return False


def guards_code(code: Any) -> bool:
    """:func:`guards_tree` for a compiled function (its names, its mode strings, and the
    functions it defines); a bare ``except:`` with no name it catches is not seen
    (docs/limitations.md)."""
    if any(n in _GUARDS for n in getattr(code, "co_names", ())):
        return True
    for const in getattr(code, "co_consts", ()):
        if isinstance(const, str) and _exclusive(const):
            return True
        if hasattr(const, "co_names") and guards_code(const):
            return True
    return False


def _exclusive(text: str) -> bool:
    return 0 < len(text) <= 4 and "x" in text and set(text) <= set("xbt+")


# -- which files a step opens, and how ------------------------------------------------------------
@dataclass(slots=True)
class Opened:
    """The files (real paths) opened while a step ran: to be replaced whole (``written``), or
    in a way that depends on what they held (``read``: reading, appending, updating)."""

    read: set[str] = field(default_factory=set)
    written: set[str] = field(default_factory=set)
    # real path -> the path as the step opened it, unresolved (links not followed), relative
    # to the working directory the step started in (after a chdir in the step too), or
    # absolute: where a hit writes it back, through the links as they are then.
    as_opened: dict[str, str] = field(default_factory=dict)
    given: dict[str, str] = field(default_factory=dict)  # real path -> the text open was given
    start: str = ""


# The audit hook is process-wide and cannot be removed: it is added once and does nothing
# unless a step is being watched (the runner's StepFiles pushes a record while a step runs).
_WATCHING: list[Opened] = []
_HOOKED: list[bool] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "open" or not _WATCHING:
        return
    try:  # never the opener's error
        path, mode, flags = args
        if isinstance(path, int):
            return  # a descriptor: already open
        text = os.fsdecode(os.fspath(path))
        here = os.getcwd()
        full = os.path.realpath(os.path.join(here, text))
        # "Written" is emptied or created by the open ('w', 'w+' as PIL saves, 'x', O_TRUNC,
        # O_EXCL): what it held cannot matter. Anything else depends on what the file held, as
        # much as reading it: 'r', 'r+', appending.
        if isinstance(mode, str):
            writes = "w" in mode or "x" in mode
        else:
            writes = bool((flags or 0) & (os.O_TRUNC | os.O_EXCL))
        reads = not writes
        for record in _WATCHING:
            if reads:
                record.read.add(full)
            if writes:
                record.written.add(full)
                record.given.setdefault(full, text)
                record.as_opened.setdefault(full, os.path.normpath(
                    text if os.path.isabs(text) else os.path.relpath(os.path.join(here, text), record.start)))
    except Exception:  # noqa: BLE001, S110 - a path we cannot resolve: not recorded
        pass


@contextmanager
def watch_opens() -> Iterator[Opened]:
    """Record the files opened through Python's ``open`` / ``os.open`` inside the block (not
    I/O done by C libraries on their own: such a file is never taken as written-only unless
    Python also opened it for writing, and never if Python opened it for reading)."""
    if not _HOOKED:
        sys.addaudithook(_audit)
        _HOOKED.append(True)
    record = Opened(start=os.getcwd())
    _WATCHING.append(record)
    try:
        yield record
    finally:
        _WATCHING.remove(record)


def describe(label: str) -> str:
    """How a miss reason names a file entry of the key: ``file data.csv``, ``files matching
    'in/*.csv'``, ``the working directory``, ``the --writes patterns``."""
    kind, _, what = label.partition(":")
    return {"file": f"file {what}", "reads": f"files matching {what!r}",
            "cwd": "the working directory", "writes": "the --writes patterns"}.get(kind, label)
