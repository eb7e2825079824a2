"""Static analysis of a step's source: which names it reads, binds and deletes.

Pure: no IPython here. The caller passes the *transformed* source (``shell.transform_cell``),
so ``!cmd`` and ``%magic`` lines arrive as ``get_ipython().system(...)`` style calls, which
this module understands for the few magics whose argument is Python code.

The analysis errs on the side of reading too much: a name counted as an input that the cell
does not really read costs a fingerprint; a missed input could make a hit stale.
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass, field

from ._introspect import (
    DYNAMIC_CALLS,
    ENV_WHOLE,
    FRAME_ATTRIBUTES,
    FRAME_METHODS,
    NAMESPACE_HANDLES,
    frame_kind,
    frame_names,
    string_frame_names,
)
from .files import literal_bindings, literal_paths

__all__ = ["CellAnalysis", "analyse", "environ_reads", "normalised_code"]

# Line/cell magics whose argument is Python code that runs in the user namespace.
_CODE_MAGICS = {"time", "timeit", "prun"}
# Magics known to neither read nor bind user variables (display/config only).
_INERT_MAGICS = {"matplotlib", "config", "load_ext", "reload_ext", "precision", "xmode", "pdb"}
# Modules that hand out namespaces (sys.modules, builtins.globals, frames, the shell).
_HANDLE_MODULES = frozenset({"sys", "builtins", "__main__", "inspect", "IPython", "gc", "importlib",
                             "ctypes", "types"})
_IPYTHON_METHODS = {"system", "getoutput", "run_line_magic", "run_cell_magic"}
_SHELL_MAGICS = {"bash", "sh", "script", "zsh"}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)|\$([A-Za-z_][A-Za-z0-9_]*)")
_SHELL_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)|\{([^{}]+)\}")


@dataclass(frozen=True, slots=True)
class CellAnalysis:
    """What a cell reads and writes, as far as the source shows."""

    inputs: frozenset[str]
    """Names some path may read before the cell binds them (incl. globals read by functions
    and lambdas the cell defines)."""
    bound: frozenset[str]
    """Names the cell assigns, imports, defines or deletes."""
    deleted: frozenset[str]
    """Names the cell ``del``-etes at top level (a subset of ``bound``)."""
    imports: frozenset[str]
    """Top-level module names the cell imports."""
    dynamic: tuple[str, ...] = field(default=())
    """Why the analysis is incomplete (``exec``, ``globals()``, ``import *``, ...); empty if
    it is complete."""
    has_await: bool = False
    paths: frozenset[str] = frozenset()
    """String literals and literal-built paths that may name files (:mod:`resumable_nb.files`)."""
    env: frozenset[str] = frozenset()
    """Environment variables the code reads (``os.environ['X']``, ``os.getenv('X')``...);
    ``"*"`` when a name is computed or the mapping is passed on: the whole environment."""
    frames: tuple[tuple[str, str], ...] = ()
    """Names a library looks up in the step's frame, from literal strings: ``(name, label)``,
    the label saying where (``("thr", "df.query:@thr")``); not in :attr:`inputs`."""
    frame_strings: tuple[tuple[str, str, str], ...] = ()
    """``df.query(q)`` with ``q`` an input: ``(variable, method, receiver)``, so that the
    names in ``q``'s value are read when the step is keyed."""
    path_bindings: tuple[tuple[str, str], ...] = ()
    """Names the step binds once to a literal path (``DATA = Path('data')``): what paths it
    builds from them (``DATA / 'x.csv'``) name (:func:`resumable_nb.files.literal_bindings`)."""
    env_set_first: frozenset[str] = frozenset()
    """Environment variables the step sets (``%env X=1``, ``os.environ['X'] = ...``, by a
    literal name, at top level) before any of its statements reads one: the value they had
    before the step is not read by its own code (:func:`env_set_first`)."""


def normalised_code(tree: ast.AST) -> str:
    """The cell's code with comments, whitespace and line numbers gone: an AST dump."""
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def analyse(source: str) -> tuple[ast.Module, CellAnalysis]:
    """Parse ``source`` (plain Python) and work out its inputs and bound names.

    :raises SyntaxError: when ``source`` is not valid Python.
    """
    tree = ast.parse(source)
    walker = _Walker()
    walker.block(tree.body)
    return tree, CellAnalysis(
        inputs=frozenset(walker.reads),
        bound=frozenset(walker.bound),
        deleted=frozenset(walker.deleted),
        imports=frozenset(walker.imports),
        dynamic=tuple(dict.fromkeys(walker.dynamic)),
        has_await=walker.has_await,
        paths=literal_paths(tree),
        env=frozenset(walker.env | environ_reads(tree)),
        frames=tuple({**_string_frames(tree, walker.bound), **walker.frames}.items()),
        frame_strings=tuple(dict.fromkeys(walker.frame_strings)),
        env_set_first=env_set_first(tree.body),
        path_bindings=tuple(sorted(literal_bindings(tree.body).items())),
    )


def env_set_first(body: list[ast.stmt]) -> frozenset[str]:
    """Variables that a top-level statement sets unconditionally (``%env X=1``, ``os.environ
    ['X'] = v``) before any statement reads that variable — or reads a computed one, or the
    whole environment. A read inside a function defined earlier counts as earlier (it may be
    called between). What functions from earlier cells and imported modules read is not
    known here: the caller keeps those variables as inputs."""
    earlier: set[str] = set()
    out: set[str] = set()
    for stmt in body:
        name, rest = _env_set(stmt)
        probe = _Walker()
        for node in rest:
            if isinstance(node, ast.stmt):
                probe.stmt(node)
            else:
                probe.expr(node)
        reads = probe.env | set().union(*(environ_reads(n) for n in rest))
        if any(not m.startswith(_ENV_VISIBLE) for m in probe.dynamic):
            reads.add(ENV_WHOLE)  # exec of a computed string, %run...: may read anything
        earlier |= reads
        if ENV_WHOLE in earlier:
            break
        if name is not None and name not in earlier:
            out.add(name)
        if name is not None:
            earlier.add(name)  # a second set is no read; the first one decided
    return frozenset(out)


# Dynamic code that still shows the environment reads it makes (``__import__('os').environ``).
_ENV_VISIBLE = tuple(f"a call to {f}()" for f in ("__import__", "globals", "locals", "vars"))


def _env_set(stmt: ast.stmt) -> tuple[str | None, list[ast.stmt | ast.expr]]:
    """The variable ``stmt`` sets, if it is a plain set, and the parts of it that run as
    well (what they read counts as read before the set)."""
    if (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
            and _is_ipython_call(stmt.value.func) and stmt.value.func.attr == "run_line_magic"  # type: ignore[attr-defined]
            and [_const_str([a]) for a in stmt.value.args][:1] == ["env"]):
        line = _const_str(stmt.value.args[1:2]) or ""
        head = line.split("=", 1)[0] if "=" in line else line.split(None, 1)[0] if " " in line.strip() else ""
        if head.strip().isidentifier() and "$" not in line and "{" not in line:
            return head.strip(), []
    if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Subscript) and _is_environ(stmt.targets[0].value)):
        name = _const_str([stmt.targets[0].slice])
        if name is not None:
            return name, [stmt.value]
    return None, [stmt]


class _Walker:
    """Flow-sensitive walk of module-level statements.

    ``defined`` is the set of names definitely bound at the current point; a load of a name
    outside it is an input. Branches that may not run do not add to ``defined``.
    """

    def __init__(self) -> None:
        self.defined: set[str] = set()
        self.reads: set[str] = set()
        self.bound: set[str] = set()
        self.deleted: set[str] = set()
        self.imports: set[str] = set()
        self.dynamic: list[str] = []
        self.has_await = False
        self.env: set[str] = set()
        self.frames: dict[str, str] = {}
        self.frame_strings: list[tuple[str, str, str]] = []

    # -- statements -------------------------------------------------------------------
    def block(self, stmts: list[ast.stmt]) -> None:
        for stmt in stmts:
            self.stmt(stmt)

    def branch(self, stmts: list[ast.stmt]) -> set[str]:
        """Walk ``stmts`` as a path that may not run; return the names it binds."""
        saved = set(self.defined)
        self.block(stmts)
        added = self.defined - saved
        self.defined = saved
        return added

    def stmt(self, node: ast.stmt) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for dec in node.decorator_list:
                self.expr(dec)
            self.arguments_defaults(node.args)
            self.expr_opt(node.returns)
            self.function_body(node.args, node.body)
            self.bind(node.name)
        elif isinstance(node, ast.ClassDef):
            for e in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
                self.expr(e)
            self.class_body(node.body)
            self.bind(node.name)
        elif isinstance(node, ast.Return):
            self.expr_opt(node.value)
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                self.delete(target)
        elif isinstance(node, ast.Assign):
            self.expr(node.value)
            for target in node.targets:
                self.target(target)
        elif isinstance(node, ast.AugAssign):
            self.expr(node.value)
            self.read_target(node.target)
            self.target(node.target)
        elif isinstance(node, ast.AnnAssign):
            self.expr_opt(node.value)
            self.expr(node.annotation)
            if node.value is not None or not isinstance(node.target, ast.Name):
                self.target(node.target)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            self.has_await |= isinstance(node, ast.AsyncFor)
            self.expr(node.iter)
            saved = set(self.defined)
            self.target(node.target)
            self.block(node.body)
            self.defined = saved
            self.branch(node.orelse)
        elif isinstance(node, ast.While):
            self.expr(node.test)
            self.branch(node.body)
            self.branch(node.orelse)
        elif isinstance(node, ast.If):
            self.expr(node.test)
            a = self.branch(node.body)
            b = self.branch(node.orelse)
            self.defined |= a & b
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            self.has_await |= isinstance(node, ast.AsyncWith)
            for item in node.items:
                self.expr(item.context_expr)
                if item.optional_vars is not None:
                    self.target(item.optional_vars)
            # A context manager may swallow an exception (contextlib.suppress): what the
            # body binds is only maybe bound after it.
            self.branch(node.body)
        elif isinstance(node, ast.Match):
            self.expr(node.subject)
            for case in node.cases:
                saved = set(self.defined)
                self.pattern(case.pattern)
                self.expr_opt(case.guard)
                self.block(case.body)
                self.defined = saved
        elif isinstance(node, ast.Raise):
            self.expr_opt(node.exc)
            self.expr_opt(node.cause)
        elif isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            self.try_(node)  # type: ignore[arg-type]  # TryStar has Try's fields
        elif isinstance(node, ast.Assert):
            self.expr(node.test)
            self.expr_opt(node.msg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            self.import_(node)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            self.dynamic.append(f"a '{type(node).__name__.lower()}' statement")
            for name in node.names:
                self.bound.add(name)
        elif isinstance(node, ast.Expr):
            self.expr(node.value)
        # Pass, Break, Continue: nothing to do.

    def try_(self, node: ast.Try) -> None:
        """try/except/else/finally (and 3.11's try/except*: same fields)."""
        self.branch(node.body)
        for handler in node.handlers:
            saved = set(self.defined)
            self.expr_opt(handler.type)
            if handler.name:
                self.bind(handler.name)
            self.block(handler.body)
            self.defined = saved
        self.branch(node.orelse)
        self.block(node.finalbody)

    def import_(self, node: ast.Import | ast.ImportFrom) -> None:
        if any(alias.name.split(".")[0] == "__main__" for alias in node.names) or (
                isinstance(node, ast.ImportFrom) and node.module == "__main__"):
            self.dynamic.append("an import of __main__")
        if isinstance(node, ast.Import):
            for alias in node.names:
                self.imports.add(alias.name.split(".")[0])
                self.bind(alias.asname or alias.name.split(".")[0])
            return
        if node.level == 0 and node.module:
            self.imports.add(node.module.split(".")[0])
        for alias in node.names:
            if alias.name == "*":
                self.dynamic.append("'from ... import *'")
            else:
                self.bind(alias.asname or alias.name)

    # -- binding ------------------------------------------------------------------------
    def bind(self, name: str) -> None:
        self.defined.add(name)
        self.bound.add(name)
        self.deleted.discard(name)

    def target(self, node: ast.expr) -> None:
        if isinstance(node, ast.Name):
            self.bind(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                self.target(elt)
        elif isinstance(node, ast.Starred):
            self.target(node.value)
        elif isinstance(node, ast.Attribute):
            self.expr(node.value)  # obj.attr = v reads obj (and mutates it)
        elif isinstance(node, ast.Subscript):
            self.expr(node.value)
            self.expr(node.slice)

    def read_target(self, node: ast.expr) -> None:
        if isinstance(node, ast.Name):
            self.load(node.id)

    def delete(self, node: ast.expr) -> None:
        if isinstance(node, ast.Name):
            self.load(node.id)
            self.defined.discard(node.id)
            self.bound.add(node.id)
            self.deleted.add(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                self.delete(elt)
        else:
            self.target(node)

    def pattern(self, node: ast.pattern) -> None:
        """Values (``case K.A``, mapping keys, class names) are read first; captures bind
        only once the whole pattern matched."""
        captures = []
        for sub in ast.walk(node):
            if isinstance(sub, (ast.MatchAs, ast.MatchStar)) and sub.name:
                captures.append(sub.name)
            elif isinstance(sub, ast.MatchMapping):
                for key in sub.keys:
                    self.expr(key)
                if sub.rest:
                    captures.append(sub.rest)
            elif isinstance(sub, ast.MatchValue):
                self.expr(sub.value)
            elif isinstance(sub, ast.MatchClass):
                self.expr(sub.cls)
        for name in captures:
            self.bind(name)

    # -- expressions --------------------------------------------------------------------
    def load(self, name: str) -> None:
        if name not in self.defined:
            self.reads.add(name)
            if name in NAMESPACE_HANDLES:
                self.dynamic.append(f"a use of {name}")

    def expr_opt(self, node: ast.expr | None) -> None:
        if node is not None:
            self.expr(node)

    def expr(self, node: ast.expr) -> None:
        if isinstance(node, ast.Name):
            self.load(node.id)
        elif isinstance(node, ast.NamedExpr):
            self.expr(node.value)
            self.target(node.target)
        elif isinstance(node, ast.Lambda):
            self.arguments_defaults(node.args)
            self.function_body(node.args, [ast.Return(node.body)])
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            self.comprehension(node)
        elif isinstance(node, ast.BoolOp):
            # Later operands may not run: a walrus there binds only maybe.
            self.expr(node.values[0])
            saved = set(self.defined)
            for value in node.values[1:]:
                self.expr(value)
            self.defined = saved
        elif isinstance(node, ast.IfExp):
            self.expr(node.test)
            saved = set(self.defined)
            self.expr(node.body)
            self.defined = set(saved)
            self.expr(node.orelse)
            self.defined = saved
        elif isinstance(node, ast.Await):
            self.has_await = True
            self.expr(node.value)
        elif isinstance(node, ast.Call):
            self.call(node)
        elif (isinstance(node, ast.Attribute) and node.attr == "modules"
              and isinstance(node.value, ast.Name) and node.value.id == "sys"):
            self.dynamic.append("sys.modules")
            self.expr(node.value)
        elif _is_builtins_handle(node):
            self.dynamic.append(f"builtins.{node.attr}")  # type: ignore[attr-defined]
            self.expr(node.value)  # type: ignore[attr-defined]
        elif isinstance(node, ast.Attribute) and node.attr in FRAME_ATTRIBUTES:
            self.dynamic.append(f"a use of .{node.attr}")
            self.expr(node.value)
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.expr):
                    self.expr(child)
                elif isinstance(child, ast.keyword):
                    self.expr(child.value)
                elif isinstance(child, ast.comprehension):  # pragma: no cover - via comprehension()
                    self.expr(child.iter)

    def call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and _is_ipython_call(func) and func.attr in _IPYTHON_METHODS:
            # A transformed ``!cmd`` / ``%magic`` line: get_ipython() here is no handle on
            # the namespace; what the command reads is in its string arguments.
            self.ipython_call(func.attr, node)
            self.reads.add("get_ipython")
        elif isinstance(func, ast.Name) and func.id in DYNAMIC_CALLS and func.id not in self.defined:
            code = _const_str(node.args[:1])
            if func.id in {"exec", "eval"} and code is not None and len(node.args) == 1:
                self.embedded_code(code, f"{func.id}()")
            elif func.id == "__import__" and code is not None and code.split(".")[0] not in _HANDLE_MODULES:
                # __import__('os'): an import that binds nothing; it hides no name (unlike
                # __import__('sys').modules['__main__']).
                self.imports.add(code.split(".")[0])
            else:
                self.dynamic.append(f"a call to {func.id}()")
            self.reads.add(func.id)
        else:
            self.expr(func)
        if isinstance(func, ast.Attribute) and func.attr in FRAME_METHODS:
            self.frame_call(func, node)
        for arg in node.args:
            self.expr(arg)
        for kw in node.keywords:
            self.expr(kw.value)

    def frame_call(self, func: ast.Attribute, node: ast.Call) -> None:
        """``df.query('a > @thr')``, ``pd.eval('x + z')``, ``pl.sql('... FROM tbl')``: the
        library reads these names from the step's frame, where the AST does not show them."""
        arg = node.args[0] if node.args else next(
            (k.value for k in node.keywords if k.arg in {"expr", "query"}), None)
        if arg is None:
            return
        owner = func.value.func if isinstance(func.value, ast.Call) else func.value
        receiver = ast.unparse(owner) + ("()" if owner is not func.value else "")
        where = f"{receiver if len(receiver) <= 30 else '...'}.{func.attr}"
        text = _const_str([arg])
        if text is not None:
            kind = frame_kind(func.attr, receiver, text)
            for name, shown in (frame_names(text, kind) if kind else {}).items():
                if name not in self.defined:
                    self.frames.setdefault(name, f"{where}:{shown}")
        elif isinstance(arg, ast.Name) and arg.id not in self.defined:
            self.frame_strings.append((arg.id, func.attr, receiver))  # read when keyed
        elif func.attr not in {"execute", "evaluate"} and _may_be_str(arg):
            # (.execute/.evaluate: ORM statements and model.evaluate(x, y) are not strings)
            # Built in the step (f-string, concatenation, a call): which names it will hold
            # is known only when it runs.
            self.dynamic.append(f"a {where}() string computed in the step")

    def ipython_call(self, method: str, node: ast.Call) -> None:
        """``get_ipython().system/getoutput/run_line_magic/run_cell_magic(...)``: what the
        transformed ``!cmd`` and ``%magic`` lines call."""
        args = [_const_str([a]) for a in node.args]
        if method in {"system", "getoutput"} and args and args[0] is not None:
            self.shell_command(args[0])
        elif method == "run_line_magic" and len(args) >= 2 and args[0] is not None:
            self.magic(args[0], args[1] or "", None)
        elif method == "run_cell_magic" and len(args) >= 3 and args[0] is not None:
            self.magic(args[0], args[1] or "", args[2] or "")
        else:
            self.dynamic.append(f"get_ipython().{method}(...) with a computed argument")

    def magic(self, name: str, line: str, cell: str | None) -> None:
        if name in _INERT_MAGICS:
            return
        if name == "env":  # %env reads (or sets) a variable, or lists them all
            var = re.split(r"[\s=]", line.strip(), maxsplit=1)[0]
            self.env.add(var if var.isidentifier() else ENV_WHOLE)
            return
        if name in _CODE_MAGICS:
            rest = _strip_magic_options(name, line)
            if cell is None:
                self.embedded_code(rest, f"%{name}")
            else:
                if name == "timeit" and rest.strip():
                    self.embedded_code(rest, f"%%{name} setup")  # the line is setup code
                self.embedded_code(cell, f"%%{name}")
            return
        if name == "capture" and cell is not None:
            target = _strip_magic_options(name, line).strip()
            self.embedded_code(cell, "%%capture")
            if target.isidentifier():
                self.bind(target)
            return
        if name in _SHELL_MAGICS and cell is not None:  # %%bash: $NAME reads the environment
            self.env.update(m.group(1) or m.group(2) for m in _ENV_REF.finditer(cell))
        self.dynamic.append(f"the magic %{name}")

    def shell_command(self, command: str) -> None:
        # IPython expands $name, ${name} and {expression} from the user namespace; a $name
        # that is no variable reaches the shell, which reads the environment variable.
        for match in _SHELL_VAR.finditer(command):
            if match.group(1):
                self.load(match.group(1))
                self.env.add(match.group(1))
            else:
                self.embedded_code(match.group(2), "a shell command", mode="eval")

    def embedded_code(self, code: str, where: str, mode: str = "exec") -> None:
        try:
            tree = ast.parse(code.strip(), mode=mode)
        except SyntaxError:
            self.dynamic.append(f"code in {where} that does not parse")
            return
        self.env |= environ_reads(tree)
        if isinstance(tree, ast.Expression):
            self.expr(tree.body)
        elif isinstance(tree, ast.Module):
            self.block(tree.body)

    # -- nested scopes ------------------------------------------------------------------
    def arguments_defaults(self, args: ast.arguments) -> None:
        for default in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
            self.expr(default)
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None:
                self.expr_opt(arg.annotation)

    def function_body(self, args: ast.arguments, body: list[ast.stmt]) -> None:
        params = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
        params |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
        for name in _free_names(body, params, self):
            self.load(name)

    def class_body(self, body: list[ast.stmt]) -> None:
        """A class body runs now, in its own scope. Its methods (and lambdas) do not see that
        scope: their free names are globals, resolved against the module scope."""
        module_defined = set(self.defined)
        saved_bound, saved_deleted = set(self.bound), set(self.deleted)
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for dec in stmt.decorator_list:
                    self.expr(dec)
                self.arguments_defaults(stmt.args)
                self.expr_opt(stmt.returns)
                class_defined, self.defined = self.defined, module_defined
                self.function_body(stmt.args, stmt.body)
                self.defined = class_defined
                self.defined.add(stmt.name)
            else:
                self.stmt(stmt)
                self.class_level_scopes(stmt, module_defined)
        self.defined, self.bound, self.deleted = module_defined, saved_bound, saved_deleted

    def class_level_scopes(self, stmt: ast.stmt, module_defined: set[str]) -> None:
        """Comprehensions and lambdas in a class body skip the class scope: names they read
        (beyond their first iterable) are globals even when the class binds the same name."""
        for node in ast.walk(stmt):
            if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp, ast.Lambda)):
                targets = ({n.id for g in node.generators for n in ast.walk(g.target)
                            if isinstance(n, ast.Name)} if not isinstance(node, ast.Lambda) else
                           {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)})
                first = node.generators[0].iter if not isinstance(node, ast.Lambda) else None
                skip = set(map(id, ast.walk(first))) if first is not None else set()
                for sub in ast.walk(node):
                    if (isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load)
                            and id(sub) not in skip and sub.id not in targets
                            and sub.id not in module_defined):
                        self.reads.add(sub.id)

    def comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp) -> None:
        gens = node.generators
        self.expr(gens[0].iter)  # evaluated in the enclosing scope
        saved = set(self.defined)
        for i, gen in enumerate(gens):
            if i:
                self.expr(gen.iter)
            self.target_local(gen.target)
            for cond in gen.ifs:
                self.expr(cond)
        if isinstance(node, ast.DictComp):
            self.expr(node.key)
            self.expr(node.value)
        else:
            self.expr(node.elt)
        # Comprehension variables are local to it. A walrus inside binds in our scope, but
        # only if the loop body ran at least once: maybe-bound, so not "defined".
        self.defined = saved

    def target_local(self, node: ast.expr) -> None:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name):
                self.defined.add(sub.id)
            elif isinstance(sub, (ast.Attribute, ast.Subscript)):
                self.expr(sub.value)


def _free_names(body: list[ast.stmt], params: set[str], outer: _Walker) -> set[str]:
    """Global names a function body may read: loads that are not local to it.

    Records dynamic markers found inside (``global``, ``eval``...) on ``outer``.
    """
    local = set(params)
    declared_global: set[str] = set()
    loads: set[str] = set()
    nested: list[tuple[ast.arguments, list[ast.stmt]]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            local.add(node.name)
            for dec in node.decorator_list:
                visit(dec)
            if isinstance(node, ast.ClassDef):
                for base in [*node.bases, *(k.value for k in node.keywords)]:
                    visit(base)
                # A class body's names are not visible to our body; walk its methods etc.
                for stmt in node.body:
                    visit_class_stmt(stmt)
            else:
                for default in [*node.args.defaults, *(d for d in node.args.kw_defaults if d)]:
                    visit(default)
                for arg in ast.walk(node.args):  # annotations run when the def does
                    if isinstance(arg, ast.arg) and arg.annotation is not None:
                        visit(arg.annotation)
                if node.returns is not None:
                    visit(node.returns)
                nested.append((node.args, node.body))
            return
        if isinstance(node, ast.Lambda):
            for default in [*node.args.defaults, *(d for d in node.args.kw_defaults if d)]:
                visit(default)
            nested.append((node.args, [ast.Return(node.body)]))
            return
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            targets = {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
            first = node.generators[0].iter  # evaluated in our scope, before the targets bind
            visit(first)
            skip = set(map(id, ast.walk(first)))
            inner: set[str] = set()
            for sub in ast.walk(node):
                if id(sub) in skip:
                    continue
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load):
                    inner.add(sub.id)
                elif isinstance(sub, ast.NamedExpr) and isinstance(sub.target, ast.Name):
                    local.add(sub.target.id)
            loads.update(inner - targets)
            return
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            outer.dynamic.append(f"a '{type(node).__name__.lower()}' statement in a function")
            declared_global.update(node.names)
            outer.bound.update(node.names if isinstance(node, ast.Global) else ())
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name != "*":
                    local.add(alias.asname or alias.name.split(".")[0])
            return
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                loads.add(node.id)
            else:
                local.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            local.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            local.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            local.add(node.rest)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in DYNAMIC_CALLS):
            outer.dynamic.append(f"a call to {node.func.id}() in a function")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and _is_ipython_call(node.func) and node.func.attr in _IPYTHON_METHODS):
            # !cmd / %magic in a function: what its strings read (conservatively global).
            probe = _Walker()
            probe.ipython_call(node.func.attr, node)
            loads.update(probe.reads)
            outer.dynamic.extend(probe.dynamic)
        elif _is_builtins_handle(node):
            outer.dynamic.append("builtins' namespace functions in a function")
        elif isinstance(node, ast.Attribute) and node.attr in FRAME_ATTRIBUTES:
            outer.dynamic.append(f"a use of .{node.attr} in a function")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in FRAME_METHODS):
            # d.query('a > @thr') in a function reads thr from the function's frame: its
            # locals, else the globals (conservatively global, as for !cmd above).
            probe = _Walker()
            probe.frame_call(node.func, node)
            loads.update(probe.frames)
            outer.dynamic.extend(probe.dynamic)
            outer.dynamic.extend(f"a {m}() string computed in a function" for _, m, _ in probe.frame_strings)
        for child in ast.iter_child_nodes(node):
            visit(child)

    def visit_class_stmt(stmt: ast.stmt) -> None:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for dec in stmt.decorator_list:
                visit(dec)
            nested.append((stmt.args, stmt.body))
        else:
            # Class-level statements: their loads are global reads unless class-bound;
            # conservatively count them all.
            for sub in ast.walk(stmt):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load):
                    loads.add(sub.id)

    for stmt in body:
        visit(stmt)
    free = (loads - local) | (loads & declared_global)
    for args, inner_body in nested:
        inner_params = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
        inner_params |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
        free |= _free_names(inner_body, inner_params, outer) - (local - declared_global)
    return free


def _string_frames(tree: ast.AST, bound: set[str]) -> dict[str, str]:
    """``@names`` and SQL identifiers in any string literal of the step, which may reach
    ``df.query`` through a helper (``pick(df, 'a > @thr')``): names the step binds are left
    out (the direct calls, read flow by flow, keep those it reads before binding them)."""
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for name, shown in string_frame_names(node.value).items():
                if name not in bound:
                    found.setdefault(name, f"a query string:{shown}")
    return found


def _may_be_str(node: ast.expr) -> bool:
    """Could this argument evaluate to a string? (Not a lambda, a literal container, a
    number...: ``session.query(User.id)`` is an ORM query, not a string.)"""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    return not isinstance(node, (ast.Lambda, ast.Dict, ast.List, ast.Set, ast.Tuple, ast.ListComp,
                                 ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Compare))


_ENV_MAPPINGS = frozenset({"environ", "environb"})
_ENV_FUNCTIONS = frozenset({"getenv", "getenvb"})
_ENV_METHODS = frozenset({"get", "setdefault", "pop", "__getitem__", "__contains__"})


def _is_environ(node: ast.AST) -> bool:
    """``os.environ``, ``environ`` (``from os import environ``); any ``x.environ`` (``import
    os as o``: which module ``o`` is, the AST does not know; a false one costs misses)."""
    if isinstance(node, ast.Attribute):
        return node.attr in _ENV_MAPPINGS
    return isinstance(node, ast.Name) and node.id in _ENV_MAPPINGS


def _is_getenv(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr in _ENV_FUNCTIONS
    return isinstance(node, ast.Name) and node.id in _ENV_FUNCTIONS


def environ_reads(tree: ast.AST) -> set[str]:
    """Environment variables the code reads anywhere (its functions too): by name when the
    name is a literal, else :data:`ENV_WHOLE` (a computed name, ``dict(os.environ)``,
    ``os.environ.items()``, the mapping passed on)."""
    found: set[str] = set()
    seen: set[int] = set()  # the os.environ / os.getenv nodes accounted for by name
    for node in ast.walk(tree):
        target: ast.expr | None = None
        name: ast.expr | None = None
        if isinstance(node, ast.Subscript) and _is_environ(node.value):
            target, name = node.value, node.slice
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in _ENV_METHODS and _is_environ(node.func.value):
            target, name = node.func.value, (node.args[0] if node.args else None)
        elif isinstance(node, ast.Call) and _is_getenv(node.func):
            target, name = node.func, (node.args[0] if node.args else None)
        elif (isinstance(node, ast.Compare) and len(node.ops) == 1
              and isinstance(node.ops[0], (ast.In, ast.NotIn)) and _is_environ(node.comparators[0])):
            target, name = node.comparators[0], node.left
        if target is not None:
            seen.add(id(target))
            literal = _const_str([name]) if name is not None else None
            found.add(literal if literal is not None else ENV_WHOLE)
    for node in ast.walk(tree):
        if (_is_environ(node) or _is_getenv(node)) and id(node) not in seen:
            found.add(ENV_WHOLE)
    return found


def _is_builtins_handle(node: ast.AST) -> bool:
    """``builtins.exec``, ``__builtins__.globals`` and the like."""
    return (isinstance(node, ast.Attribute) and node.attr in NAMESPACE_HANDLES
            and isinstance(node.value, ast.Name) and node.value.id in {"builtins", "__builtins__"})


def _is_ipython_call(func: ast.expr) -> bool:
    return (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Call)
        and isinstance(func.value.func, ast.Name)
        and func.value.func.id == "get_ipython"
    )


def _const_str(args: list[ast.expr]) -> str | None:
    if args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
        return args[0].value
    return None


# Options that take a value, per magic (the others are flags: %timeit -o, %prun -r).
_VALUE_OPTIONS = {"timeit": {"-n", "-r", "-p"}, "prun": {"-l", "-s", "-T", "-D"}, "time": set(),
                  "capture": set()}


def _strip_magic_options(magic: str, line: str) -> str:
    """``%timeit -n 3 -r 1 f(x)`` -> ``f(x)``: drop leading ``-opt [value]`` words."""
    try:
        words = shlex.split(line, posix=False)
    except ValueError:
        return line
    i = 0
    with_value = _VALUE_OPTIONS.get(magic, set())
    while i < len(words) and words[i].startswith("-"):
        i += 2 if words[i] in with_value else 1
    # Rebuild from the original text so that string literals keep their spacing.
    rest = line
    for word in words[:i]:
        rest = rest.split(word, 1)[1] if word in rest else rest
    return rest


