"""The remote store: bytes in an S3-compatible bucket (MinIO, Ceph, R2, S3; GCS and Azure too).

This layer moves bytes and nothing else: it never unpickles, never parses a manifest and never
decides whether something is trusted. The local :class:`~resumable_nb.store.Store` verifies
everything it reads from here exactly as it verifies its own folder (signed manifests, MAC'd
payloads), so a planted or damaged object is a miss, never a value.

Layout under ``s3://BUCKET/PREFIX/``::

    objects/<mac>.rnb                         payload files, content-addressed (immutable)
    manifests/<step key>.json                 the signed manifest record, first writer wins
    journal/<project>/<notebook>/<run>/<seq>.jsonl
                                              a run's journal, as append-only segments

Configuration is the standard AWS one (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_DEFAULT_REGION`` / ``AWS_REGION``),
read by the client library (obstore, chosen on measurements: docs/architecture.md). obstore
is imported only when a :class:`RemoteStore` is made, so ``%load_ext`` costs nothing extra
when no remote is configured (and obstore need not be installed: the ``[team]`` extra).

Every call has a connect timeout and an overall deadline, and every failure becomes one
:class:`RemoteUnavailable` with a one-line message: the remote is a cache, never a dependency.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

from .config import ENV
from .errors import CorruptEntry, StoreError

__all__ = [
    "NotebookId",
    "RemoteObject",
    "RemoteStore",
    "RemoteURL",
    "RemoteUnavailable",
    "complete_lines",
    "concat_segments",
    "list_runs",
    "manifest_name",
    "notebook_identity",
    "object_name",
    "read_run",
    "remote_from_env",
    "segment_name",
]

PART_SIZE = 8 << 20  # multipart part size: 8 MiB
PARTS_IN_FLIGHT = 4  # memory in flight for one transfer is about PART_SIZE * PARTS_IN_FLIGHT
MAX_BLOB = 16 << 20  # a manifest or journal segment larger than this is refused, not read
SCHEMES = ("s3", "gs", "az")
_NAME = re.compile(r"(?!\.\.?$)[A-Za-z0-9._%=+@-]+")  # one segment; never "." or ".."


class RemoteUnavailable(StoreError):
    """The remote store cannot be reached or refused the request; local caching goes on."""


# -- addresses -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RemoteURL:
    """``s3://BUCKET/PREFIX`` (or ``gs://``, ``az://``), parsed."""

    scheme: str
    bucket: str
    prefix: str  # no leading or trailing slash; "" for the bucket's root

    @classmethod
    def parse(cls, url: str) -> RemoteURL:
        """:raises StoreError: for anything but ``s3://``, ``gs://``, ``az://`` with a bucket."""
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme not in SCHEMES or not parts.netloc or parts.query or parts.fragment:
            raise StoreError(f"remote store {url!r} is not a bucket URL: use s3://BUCKET/PREFIX "
                             "(gs:// and az:// work the same way)")
        prefix = parts.path.strip("/")
        if any(seg in ("", ".", "..") for seg in prefix.split("/")) and prefix:
            raise StoreError(f"remote store {url!r} has an empty, '.' or '..' path segment")
        return cls(parts.scheme, parts.netloc, prefix)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.prefix}".rstrip("/")


def _check_name(name: str) -> str:
    """Names are relative to the store's prefix: plain segments, no '..', no leading '/'."""
    segments = name.split("/")
    if not name or not all(_NAME.fullmatch(seg) for seg in segments):
        raise ValueError(f"invalid remote object name {name!r}")
    return name


def object_name(file: str) -> str:
    """Where a payload file (``<mac>.rnb``, as in the local ``objects/``) lives remotely."""
    return _check_name(f"objects/{file}")


def manifest_name(key: str) -> str:
    """Where the signed manifest record of step key ``key`` lives remotely."""
    return _check_name(f"manifests/{key}.json")


@dataclass(frozen=True, slots=True)
class RemoteObject:
    """One listed object: its name relative to the store's prefix."""

    name: str
    size: int
    modified: float  # epoch seconds


# -- the store -------------------------------------------------------------------------------
def _obstore() -> Any:
    try:
        import obstore
        import obstore.store
    except ImportError:
        raise StoreError("a remote store needs obstore: pip install 'resumable-nb[team]'") from None
    return obstore


class RemoteStore:
    """Immutable, content-addressed objects under one bucket prefix.

    ``connect_timeout`` bounds connecting; ``timeout`` bounds a whole small request (HEAD, a
    manifest, a listing page, one multipart part) including retries. A transfer of a big file
    makes many such requests; ``read_timeout`` catches a stalled one.

    :raises StoreError: bad URL, or obstore missing. Nothing is contacted here.
    """

    def __init__(self, url: str | RemoteURL, *, connect_timeout: float = 2.0, timeout: float = 5.0,
                 read_timeout: float = 30.0, env: Mapping[str, str] | None = None) -> None:
        self.url = url if isinstance(url, RemoteURL) else RemoteURL.parse(url)
        self.timeout = timeout
        env = os.environ if env is None else env
        obstore = _obstore()  # Any: its overloads are per scheme, our config is built at run time
        from_url = obstore.store.from_url

        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or ""
        config: dict[str, Any] = {}
        if self.url.scheme == "s3" and endpoint:
            config["endpoint"] = endpoint
        # Retries stay inside the deadline: a dead server answers "unavailable" in about
        # ``timeout``, never after obstore's default 3 minutes of backoff.
        retry = {"max_retries": 2, "retry_timeout": timedelta(seconds=timeout),
                 "backoff": {"init_backoff": timedelta(milliseconds=100),
                             "max_backoff": timedelta(seconds=1), "base": 2}}

        def client(total: float) -> dict[str, Any]:
            return {"connect_timeout": timedelta(seconds=connect_timeout),
                    "timeout": timedelta(seconds=total),
                    "allow_http": endpoint.startswith("http://")}

        root = f"{self.url.scheme}://{self.url.bucket}/{self.url.prefix}"
        try:
            # Two clients: small requests get the short deadline; a part of a multipart
            # transfer (8 MiB) gets ``read_timeout`` so a slow link is not cut off.
            self._small = from_url(root, config=config or None, client_options=client(timeout),
                                   retry_config=retry)
            self._bulk = from_url(root, config=config or None, client_options=client(read_timeout),
                                  retry_config={**retry, "retry_timeout": timedelta(seconds=read_timeout)})
        except obstore.exceptions.BaseError as exc:
            raise StoreError(f"remote store {self.url}: {_first_line(exc)}") from None
        self._ob = obstore

    def __repr__(self) -> str:
        return f"RemoteStore({str(self.url)!r})"

    # -- error mapping ----------------------------------------------------------------------
    def _unavailable(self, what: str, exc: BaseException) -> RemoteUnavailable:
        ex = self._ob.exceptions
        if isinstance(exc, (ex.PermissionDeniedError, ex.UnauthenticatedError)):
            hint = "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
        else:
            hint = "check AWS_ENDPOINT_URL and the network; steps keep using the local cache"
        return RemoteUnavailable(f"remote store {self.url}: {what} failed ({_first_line(exc)}); {hint}")

    def _missing(self, exc: BaseException) -> bool:
        return isinstance(exc, (FileNotFoundError, self._ob.exceptions.NotFoundError))

    # -- small objects ----------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        """:raises RemoteUnavailable:"""
        return self.size(name) is not None

    def size(self, name: str) -> int | None:
        """The object's size, or None when there is none. :raises RemoteUnavailable:"""
        _check_name(name)  # outside the try: a bad name is our bug, not the remote's
        try:
            return int(self._ob.head(self._small, name)["size"])
        except Exception as exc:  # noqa: BLE001 - every client error is mapped below
            if self._missing(exc):
                return None
            raise self._unavailable(f"HEAD {name}", exc) from None

    def put_blob(self, name: str, data: bytes, *, if_absent: bool = True) -> bool:
        """Store a small object in one request. With ``if_absent`` (the default) an existing
        object is left alone (S3 ``If-None-Match: *``) and False is returned.

        :raises RemoteUnavailable:
        """
        if len(data) > MAX_BLOB:
            raise ValueError(f"{name}: {len(data)} bytes is too big for a blob (use put_file)")
        _check_name(name)
        ex = self._ob.exceptions
        try:
            self._ob.put(self._small, name, data,
                         mode="create" if if_absent else "overwrite", use_multipart=False)
        except (ex.AlreadyExistsError, ex.PreconditionError):
            return False  # another writer was first: same name, same content (or a signed rival)
        except ex.NotSupportedError:
            # A store without conditional writes: entries are immutable, so overwriting an
            # identical name is harmless (a manifest then goes to the last writer, still signed).
            self.put_blob(name, data, if_absent=False)
        except Exception as exc:  # noqa: BLE001
            raise self._unavailable(f"PUT {name}", exc) from None
        return True

    def get_blob(self, name: str, *, max_size: int = MAX_BLOB) -> bytes | None:
        """A small object's bytes, or None when there is none. An object larger than
        ``max_size`` is not read (a planted giant would otherwise fill memory).

        :raises RemoteUnavailable: :raises CorruptEntry: too big.
        """
        _check_name(name)
        try:
            result = self._ob.get(self._small, name)
            size = int(result.meta["size"])
            if size > max_size:
                raise CorruptEntry(f"remote object {name} is {size} bytes, more than a "
                                   f"{max_size}-byte blob may be: ignored")
            return bytes(result.bytes())
        except CorruptEntry:
            raise
        except Exception as exc:  # noqa: BLE001
            if self._missing(exc):
                return None
            raise self._unavailable(f"GET {name}", exc) from None

    def list(self, prefix: str = "") -> Iterator[RemoteObject]:
        """Objects whose name starts with the folder ``prefix`` (``"objects/"``, ...), in pages.

        :raises RemoteUnavailable:
        """
        folder = prefix.strip("/")
        if folder:
            _check_name(folder)
        try:
            for page in self._ob.list(self._small, folder or None, chunk_size=1000):
                for meta in page:
                    yield RemoteObject(str(meta["path"]), int(meta["size"]),
                                       meta["last_modified"].timestamp())
        except Exception as exc:  # noqa: BLE001
            raise self._unavailable(f"LIST {prefix or '/'}", exc) from None

    def delete(self, name: str) -> None:
        """For ``gc`` and tests; a missing object is not an error. :raises RemoteUnavailable:"""
        _check_name(name)
        try:
            self._ob.delete(self._small, name)
        except Exception as exc:  # noqa: BLE001
            if not self._missing(exc):
                raise self._unavailable(f"DELETE {name}", exc) from None

    # -- big files --------------------------------------------------------------------------
    def put_file(self, name: str, source: str | os.PathLike[str] | int, *,
                 skip_existing: bool = True) -> bool:
        """Upload a file (a path, or a descriptor read from offset 0), streamed in multipart
        parts of :data:`PART_SIZE`, :data:`PARTS_IN_FLIGHT` at a time: never the whole file in
        memory. The object appears whole or not at all.

        Payloads are content-addressed, so a name that exists already (same size) holds the
        same bytes: it is skipped (False). Two machines uploading the same name at once both
        write identical bytes; the last complete upload wins, which is the same object.

        :raises RemoteUnavailable: :raises OSError: the local file cannot be read.
        """
        _check_name(name)
        with _open_source(source) as f:
            length = os.fstat(f.fileno()).st_size
            if skip_existing and self.size(name) == length:
                return False
            try:
                self._ob.put(self._bulk, name, f, use_multipart=length > PART_SIZE,
                             chunk_size=PART_SIZE, max_concurrency=PARTS_IN_FLIGHT)
            except Exception as exc:  # noqa: BLE001
                raise self._unavailable(f"upload of {name}", exc) from None
        return True

    def get_file(self, name: str, dest: str | os.PathLike[str] | int, *,
                 expected_size: int | None = None) -> int | None:
        """Download an object into ``dest``, streamed in pieces; returns its size, or None when
        there is no such object (``dest`` untouched).

        A path ``dest`` is written through a temp file beside it and renamed into place only
        when complete and of the right size; a descriptor is written from its current position.
        The size check here catches a truncated object or transfer; the store's MACs catch
        the rest (this layer cannot tell a tampered object of the right size).

        :raises RemoteUnavailable: :raises CorruptEntry: the size is not ``expected_size`` or
            not what the server announced.
        """
        _check_name(name)
        try:
            result = self._ob.get(self._bulk, name)
        except Exception as exc:  # noqa: BLE001
            if self._missing(exc):
                return None
            raise self._unavailable(f"download of {name}", exc) from None
        announced = int(result.meta["size"])
        if expected_size is not None and announced != expected_size:
            raise CorruptEntry(f"remote object {name} is {announced} bytes, its manifest says "
                               f"{expected_size} (truncated or replaced): ignored")
        if isinstance(dest, int):
            got = self._stream(name, result, dest)
        else:
            target = Path(dest)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{os.getpid()}-", suffix=".part")
            try:
                try:
                    got = self._stream(name, result, fd)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                if got == announced:
                    os.replace(tmp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        if got != announced:
            raise CorruptEntry(f"remote object {name} ended after {got} of {announced} bytes "
                               "(a broken transfer): try again")
        return got

    def _stream(self, name: str, result: Any, fd: int) -> int:
        got = 0
        try:
            for chunk in result.stream(min_chunk_size=PART_SIZE):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                got += len(chunk)
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._unavailable(f"download of {name}", exc) from None
        return got


@contextlib.contextmanager
def _open_source(source: str | os.PathLike[str] | int) -> Iterator[BinaryIO]:
    if isinstance(source, int):
        # Our own descriptor (the caller's position and lifetime are left alone).
        with open(os.dup(source), "rb", closefd=True) as f:
            f.seek(0)
            yield f
    else:
        with open(source, "rb") as f:
            yield f


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def remote_from_env(env: Mapping[str, str] | None = None, url: str = "") -> RemoteStore | None:
    """The remote store ``url``, else the one named by ``$RESUMABLE_NB_STORE``
    (``s3://BUCKET/PREFIX``), or None. ``$RESUMABLE_NB_STORE_TIMEOUT`` (seconds) sets the
    per-request deadline.

    :raises StoreError: a bad URL or timeout, or obstore missing.
    """
    env = os.environ if env is None else env
    url = (url or env.get(ENV["STORE"], "")).strip()
    if not url:
        return None
    try:
        timeout = float(env.get(ENV["STORE_TIMEOUT"], "5"))
    except ValueError:
        raise StoreError(f"{ENV['STORE_TIMEOUT']} must be a number of seconds") from None
    return RemoteStore(url, timeout=timeout, env=env)


# -- which notebook, across machines -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NotebookId:
    """A notebook's name that is the same on every machine: ``project`` (``$RESUMABLE_NB_PROJECT``,
    else the git repository's origin, else its folder's name, else ``_``) and ``notebook`` (its
    path relative to the repository root, else its file name)."""

    project: str
    notebook: str

    @property
    def prefix(self) -> str:
        """``journal/<project>/<notebook>/``, each part one URL-quoted path segment."""
        return f"journal/{_segment(self.project)}/{_segment(self.notebook)}/"


def _segment(text: str) -> str:
    # One reversible path segment: '/' and anything S3 treats specially are %-escaped.
    return urllib.parse.quote(text, safe="-_.") or "_"


def _git_root(start: Path) -> tuple[Path, Path] | None:
    """(work-tree root, git dir) of the repository holding ``start``, found without git."""
    for folder in (start, *start.parents):
        dot = folder / ".git"
        if dot.is_dir():
            return folder, dot
        if dot.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = dot.read_text(errors="replace").strip()
            if text.startswith("gitdir:"):
                gitdir = Path(text.split(":", 1)[1].strip())
                return folder, gitdir if gitdir.is_absolute() else (folder / gitdir).resolve()
    return None


def _origin(gitdir: Path) -> str | None:
    """The ``origin`` remote's URL from the repository's config, as ``host/owner/repo``."""
    common = gitdir
    with contextlib.suppress(OSError):  # a worktree keeps its config in the common dir
        common = (gitdir / (gitdir / "commondir").read_text().strip()).resolve()
    try:
        lines = (common / "config").read_text(errors="replace").splitlines()
    except OSError:
        return None
    section = ""
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
        elif section == '[remote "origin"]' and stripped.startswith("url"):
            url = stripped.split("=", 1)[1].strip()
            # git@host:owner/repo.git, https://user@host/owner/repo(.git), ssh://git@host/...
            url = re.sub(r"^[a-z+]+://", "", url)
            url = re.sub(r"^[^@/]*@", "", url).replace(":", "/", 1)
            return url.removesuffix(".git").strip("/") or None
    return None


def notebook_identity(notebook: str | os.PathLike[str] | None,
                      env: Mapping[str, str] | None = None) -> NotebookId:
    """Identify ``notebook`` the same way on every machine (see :class:`NotebookId`).
    ``None`` (no notebook known, plain IPython) is ``<cwd>/ipython``."""
    env = os.environ if env is None else env
    path = Path(notebook).absolute() if notebook is not None else Path.cwd() / "ipython"
    found = _git_root(path.parent)
    if found is not None:
        root, gitdir = found
        rel = path.relative_to(root).as_posix()
        project = _origin(gitdir) or root.name
    else:
        rel, project = path.name, "_"
    return NotebookId(env.get(ENV["PROJECT"]) or project, rel)


# -- the journal, mirrored ---------------------------------------------------------------------
def segment_name(ident: NotebookId, run: str, seq: int) -> str:
    """``journal/<project>/<notebook>/<run>/<seq>.jsonl``: a run's ``seq``-th segment (from 0)."""
    if seq < 0:
        raise ValueError("segment numbers start at 0")
    return _check_name(f"{ident.prefix}{_segment(run)}/{seq:08d}.jsonl")


def complete_lines(data: bytes) -> bytes:
    """The complete records at the start of ``data`` (up to the last newline): a torn last
    record (a writer mid-append) is left for the next segment."""
    end = data.rfind(b"\n")
    return data[:end + 1]


def list_runs(remote: RemoteStore, ident: NotebookId) -> list[str]:
    """The runs mirrored for a notebook, oldest first (run ids are time-ordered).

    :raises RemoteUnavailable:
    """
    runs = set()
    for obj in remote.list(ident.prefix):
        rest = obj.name[len(ident.prefix):].split("/")
        if len(rest) == 2:
            runs.add(urllib.parse.unquote(rest[0]))
    return sorted(runs)


def concat_segments(segments: Mapping[int, bytes]) -> bytes:
    """A run's journal bytes from its segments: in order, stopping at the first missing number
    (a segment still being uploaded: what follows it would describe steps whose start is
    missing). A segment with a torn end (never written by us) is cut at its last newline."""
    out = []
    seq = 0
    while seq in segments:
        out.append(complete_lines(segments[seq]))
        seq += 1
    return b"".join(out)


def read_run(remote: RemoteStore, ident: NotebookId, run: str) -> bytes:
    """The mirrored journal of one run, as the bytes of a local journal file; the journal's own
    reader then checks every record (this layer trusts none of them).

    :raises RemoteUnavailable:
    """
    folder = f"{ident.prefix}{_segment(run)}/"
    segments: dict[int, bytes] = {}
    for obj in remote.list(folder):
        stem = obj.name[len(folder):].removesuffix(".jsonl")
        if stem.isdigit():
            data = remote.get_blob(obj.name)
            if data is not None:
                segments[int(stem)] = data
    return concat_segments(segments)
