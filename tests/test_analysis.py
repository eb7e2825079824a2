"""resumable_nb.analysis: what a cell reads, binds and deletes, as parametrize tables.

Sources are what ``shell.transform_cell`` hands the runner, so magics appear here as the
``get_ipython().run_line_magic(...)`` calls IPython turns them into. Builtins a cell uses
(``print``, ``range``...) are inputs too: the runner drops them, the analysis does not.

A missed input can make a hit stale; a spurious one only costs a fingerprint. The last
table lists reads the analysis once missed (each was a stale-hit risk).
"""

from __future__ import annotations

import textwrap

import pytest
from IPython.core.inputtransformer2 import TransformerManager

from resumable_nb.analysis import CellAnalysis, analyse, normalised_code


def _analyse(source: str) -> CellAnalysis:
    return analyse(textwrap.dedent(source))[1]


def _names(spec: str) -> frozenset[str]:
    return frozenset(spec.split())


# -- inputs and bound names ------------------------------------------------------------------
# (source, inputs, bound): the analysis must be complete (no dynamic reason) for all of these.
COMPLETE = [
    # read before write
    pytest.param("x = x + 1", "x", "x", id="read-before-write"),
    pytest.param("x = 1\nx = x + 1", "", "x", id="write-then-read"),
    pytest.param("y = x\nx = 2", "x", "x y", id="read-then-rebind"),
    pytest.param("a, b = b, a", "a b", "a b", id="swap"),
    pytest.param("first, *rest = seq", "seq", "first rest", id="starred-target"),
    pytest.param("x: int = y", "int y", "x", id="annotated-assign"),
    pytest.param("x: int", "int", "", id="bare-annotation-binds-nothing"),
    # augmented assignment
    pytest.param("x += 1", "x", "x", id="augassign"),
    pytest.param("total = 0\ntotal += step", "step", "total", id="augassign-after-bind"),
    pytest.param("obj.n += 1", "obj", "", id="augassign-attribute"),
    pytest.param("d[k] += v", "d k v", "", id="augassign-subscript"),
    # imports
    pytest.param("import a.b as c", "", "c", id="import-dotted-as"),
    pytest.param("import a.b", "", "a", id="import-dotted"),
    pytest.param("from m import n", "", "n", id="from-import"),
    pytest.param("from m.sub import n as k", "", "k", id="from-import-as"),
    pytest.param("import os\nos.path.join(p, q)", "p q", "os", id="import-then-use"),
    # def / class / lambda: free globals of the bodies are inputs
    pytest.param("def f(a):\n    return a + g", "g", "f", id="def-free-global"),
    pytest.param("def f(a, *args, b=1, **kw):\n    return a, args, b, kw", "", "f", id="def-params-local"),
    pytest.param("def f():\n    y = 1\n    return y + z", "z", "f", id="def-local-vs-global"),
    pytest.param("def f():\n    import os\n    return os.sep + other", "other", "f", id="def-local-import"),
    pytest.param("def outer():\n    def inner():\n        return g\n    return inner", "g", "outer",
                 id="nested-def-free-global"),
    pytest.param("def outer():\n    g = 1\n    def inner():\n        return g\n    return inner", "", "outer",
                 id="nested-def-closure"),
    pytest.param("def outer():\n    return lambda: g", "g", "outer", id="lambda-in-def"),
    pytest.param("def f(a=d):\n    return a", "d", "f", id="default-read-at-def"),
    pytest.param("d = 1\ndef f(a=d):\n    return a", "", "d f", id="default-bound-before"),
    pytest.param("def f(a=y):\n    return a\ny = 1", "y", "f y", id="default-bound-after"),
    pytest.param("def f(*, k=kd):\n    return k", "kd", "f", id="kwonly-default"),
    pytest.param("def f():\n    def g(a=dflt):\n        return a\n    return g", "dflt", "f",
                 id="nested-default"),
    pytest.param("k = 2\ndef f(x):\n    return x * k", "", "k f", id="def-reads-name-bound-before"),
    pytest.param("def f(x):\n    return x * k\nk = 2", "k", "f k", id="def-reads-name-bound-after"),
    pytest.param("@dec(arg)\ndef f():\n    pass", "arg dec", "f", id="decorator"),
    pytest.param("def f(a: T) -> R:\n    return a", "R T", "f", id="annotations"),
    pytest.param("async def f():\n    await g()", "g", "f", id="async-def"),
    pytest.param("f = lambda y, q=w: y + v", "v w", "f", id="lambda"),
    pytest.param("fs = [lambda: i * k for i in xs]", "k xs", "fs", id="lambda-in-comprehension"),
    pytest.param("class C(Base, metaclass=M):\n    attr = val\n    def m(self):\n        return glob",
                 "Base M glob val", "C", id="class"),
    pytest.param("class C:\n    a = 1\n    b = a + 1", "", "C", id="class-body-sequential"),
    pytest.param("class C:\n    a = 1\na", "a", "C", id="class-attrs-not-bound-outside"),
    pytest.param("@deco\nclass P:\n    x: T = dflt", "T deco dflt", "P", id="class-decorator-annotation"),
    pytest.param("def f():\n    class Inner(B):\n        z = c\n    return Inner", "B c", "f",
                 id="class-in-def"),
    # comprehensions: loop variables are local, the first iterable is read outside
    pytest.param("r = [i for i in items if i > lim]", "items lim", "r", id="listcomp"),
    pytest.param("r = [i for i in xs]\ni", "i xs", "r", id="comprehension-var-is-local"),
    pytest.param("r = {k: v for k, v in pairs}", "pairs", "r", id="dictcomp"),
    pytest.param("s = {f(i) for i in xs}", "f xs", "s", id="setcomp"),
    pytest.param("g = (x * k for x in xs)", "k xs", "g", id="genexp"),
    pytest.param("r = [j for i in rows for j in i]", "rows", "r", id="nested-generators"),
    pytest.param("r = [[c for c in row] for row in grid]", "grid", "r", id="nested-comprehension"),
    pytest.param("r = [x for x in x]", "x", "r", id="comprehension-shadows-iterable"),
    pytest.param("r = [last := i for i in xs]", "xs", "last r", id="walrus-in-comprehension-binds-outside"),
    pytest.param("r = [i for i in xs if (m := i) > 0]", "xs", "m r", id="walrus-in-comprehension-condition"),
    pytest.param("def f():\n    return [i * k for i in xs]", "k xs", "f", id="comprehension-in-def"),
    # if / else: bound afterwards only when both branches bind
    pytest.param("if c:\n    a = 1\nelse:\n    a = 2\na", "c", "a", id="if-else-both-bind"),
    pytest.param("if c:\n    a = 1\na", "a c", "a", id="if-without-else"),
    pytest.param("if c:\n    a = 1\nelse:\n    b = 2\na, b", "a b c", "a b", id="if-else-different-names"),
    pytest.param("if c:\n    a = 1\nelif d:\n    a = 2\na", "a c d", "a", id="elif-without-else"),
    pytest.param("if c:\n    a = 1\nelif d:\n    a = 2\nelse:\n    a = 3\na", "c d", "a",
                 id="elif-with-else"),
    pytest.param("if (n := size) > 1:\n    pass\nn", "size", "n", id="walrus-in-test"),
    pytest.param("x = a if c else (b := 1)\nb", "a b c", "b x", id="walrus-in-ifexp-branch"),
    pytest.param("ok = a or (b := 2)\nb", "a b", "b ok", id="walrus-in-boolop-tail"),
    # loops: the body may not run
    pytest.param("for i in xs:\n    t = i\nt, i", "i t xs", "i t", id="for-body-may-not-run"),
    pytest.param("for i in xs:\n    pass\nelse:\n    z = 1\nz", "xs z", "i z", id="for-else"),
    pytest.param("for k in d:\n    acc = acc + k", "acc d", "acc k", id="for-accumulate"),
    pytest.param("for obj.attr in xs:\n    pass", "obj xs", "", id="for-attribute-target"),
    pytest.param("while c:\n    t = 1\nt", "c t", "t", id="while-body-may-not-run"),
    pytest.param("n = 0\nwhile n < lim:\n    n += 1", "lim", "n", id="while-counter"),
    # try / except
    pytest.param("try:\n    t = f()\nexcept E as e:\n    print(e)\ne", "E e f print", "e t",
                 id="except-as-unbound-after-handler"),
    pytest.param("try:\n    pass\nexcept E as err:\n    msg = str(err)", "E str", "err msg", id="except-as"),
    pytest.param("try:\n    import fast as impl\nexcept ImportError:\n    import slow as impl",
                 "ImportError", "impl", id="try-import-fallback"),
    pytest.param("try:\n    pass\nfinally:\n    done = True\ndone", "", "done", id="finally-always-runs"),
    pytest.param("try:\n    pass\nexcept* ValueError as eg:\n    n = len(eg.exceptions)",
                 "ValueError len", "eg n", id="except-star"),
    # with
    pytest.param("with open(p) as fh:\n    data = fh.read()", "open p", "data fh", id="with-as"),
    pytest.param("with open(p) as fh:\n    pass\nfh.name", "open p", "fh", id="with-as-bound-after"),
    pytest.param("with lock, ctx() as (a, b):\n    pass", "ctx lock", "a b", id="with-tuple-target"),
    pytest.param("with ctx() as obj.attr:\n    pass", "ctx obj", "", id="with-attribute-target"),
    # match
    pytest.param(
        """\
        match cmd:
            case [x, y]:
                z = x + y
            case {"k": v, **rest}:
                z = v
            case Point(x=0) as pt:
                z = pt
            case Color.RED:
                z = 1
            case _ if flag:
                z = 2
        z
        """,
        "Color Point cmd flag z", "pt rest v x y z", id="match"),
    # del
    pytest.param("x = 1\ndel x", "", "x", id="del-bound-name"),
    pytest.param("del d[k], obj.attr", "d k obj", "", id="del-subscript-attribute"),
    # attribute / subscript stores read the base object
    pytest.param("obj.attr = v", "obj v", "", id="attribute-store"),
    pytest.param("obj[k] = v", "k obj v", "", id="subscript-store"),
    pytest.param("a.b.c = 1", "a", "", id="nested-attribute-store"),
    pytest.param("x, obj.y = pair", "obj pair", "x", id="mixed-targets"),
    pytest.param("obj[i:j] = []", "i j obj", "", id="slice-store"),
    # expressions
    pytest.param('s = f"{a!r:>{width}}"', "a width", "s", id="fstring"),
    pytest.param("print(x := 1, x)", "print", "x", id="walrus-in-call"),
    # exec / eval with constant strings are parsed
    pytest.param('exec("y = f(x)")', "exec f x", "y", id="exec-constant"),
    pytest.param('z = eval("a + b")', "a b eval", "z", id="eval-constant"),
    # IPython-transformed magics and shell commands
    pytest.param("get_ipython().run_line_magic('time', 'y = f(x)')", "f get_ipython x", "y",
                 id="line-magic-time"),
    pytest.param("get_ipython().run_cell_magic('time', '', 'y = f(x)\\n')", "f get_ipython x", "y",
                 id="cell-magic-time"),
    pytest.param("get_ipython().run_line_magic('timeit', '-n 3 -r 1 f(x)')", "f get_ipython x", "",
                 id="line-magic-timeit-options"),
    pytest.param("get_ipython().run_line_magic('prun', '-l 5 f(x)')", "f get_ipython x", "",
                 id="line-magic-prun-options"),
    pytest.param("get_ipython().run_cell_magic('capture', 'out', 'y = f(x)\\n')", "f get_ipython x",
                 "out y", id="cell-magic-capture"),
    pytest.param("get_ipython().run_line_magic('matplotlib', 'inline')", "get_ipython", "",
                 id="inert-magic"),
    pytest.param("get_ipython().system('echo $name {a+b}')", "a b get_ipython name", "",
                 id="shell-vars"),
    pytest.param("files = get_ipython().getoutput('ls ${folder}')", "folder get_ipython", "files",
                 id="shell-getoutput"),
]


@pytest.mark.parametrize(("source", "inputs", "bound"), COMPLETE)
def test_inputs_and_bound(source: str, inputs: str, bound: str) -> None:
    analysis = _analyse(source)
    assert analysis.inputs == _names(inputs)
    assert analysis.bound == _names(bound)
    assert analysis.dynamic == ()


@pytest.mark.parametrize(
    ("source", "inputs", "bound", "deleted"),
    [
        ("del x", "x", "x", "x"),
        ("x = 1\ndel x", "", "x", "x"),
        ("del a, b", "a b", "a b", "a b"),
        ("del x\nx = 2", "x", "x", ""),
        ("del (a, [b])", "a b", "a b", "a b"),
        ("del d[k]", "d k", "", ""),
        ("if c:\n    del x", "c x", "x", "x"),
    ],
    ids=["del", "bind-then-del", "del-several", "del-then-rebind", "del-nested-targets",
         "del-subscript", "del-in-branch"],
)
def test_deleted(source: str, inputs: str, bound: str, deleted: str) -> None:
    analysis = _analyse(source)
    assert analysis.inputs == _names(inputs)
    assert analysis.bound == _names(bound)
    assert analysis.deleted == _names(deleted)
    assert analysis.deleted <= analysis.bound


@pytest.mark.parametrize(
    ("source", "imports"),
    [
        ("import a.b as c", "a"),
        ("import numpy as np, pandas", "numpy pandas"),
        ("from m.sub import n", "m"),
        ("from . import n", ""),
        ("from .pkg import n", ""),
        ("def f():\n    import os\n    return os", ""),
        ("try:\n    import fast as impl\nexcept ImportError:\n    import slow as impl", "fast slow"),
    ],
    ids=["dotted-as", "several", "from-dotted", "relative", "relative-module", "inside-def",
         "try-fallback"],
)
def test_imports(source: str, imports: str) -> None:
    assert _analyse(source).imports == _names(imports)


# -- dynamic: the analysis says it is incomplete, so the runner treats everything as input ----
@pytest.mark.parametrize(
    ("source", "must_read"),
    [
        pytest.param("global g\ng = 1", "", id="global-statement"),
        pytest.param("def f():\n    global counter\n    counter += 1", "", id="global-in-def"),
        pytest.param("def f():\n    n = 0\n    def g():\n        nonlocal n\n        n += 1\n    return g",
                     "", id="nonlocal-in-def"),
        pytest.param("exec(code)", "code", id="exec-non-constant"),
        pytest.param("y = eval(expr_text)", "expr_text", id="eval-non-constant"),
        pytest.param("exec(f'y = {x}')", "x", id="exec-fstring"),
        pytest.param("globals()['x'] = 1", "", id="globals"),
        pytest.param("ns = locals()", "", id="locals"),
        pytest.param("v = vars()", "", id="vars"),
        pytest.param("mod = __import__(name)", "name", id="dunder-import"),
        pytest.param("def f(s):\n    return eval(s)", "", id="eval-in-def"),
        pytest.param("from x import *", "", id="import-star"),
        pytest.param("get_ipython().run_line_magic('foo', 'bar')", "", id="unknown-line-magic"),
        pytest.param("get_ipython().run_cell_magic('bash', '', 'echo hi\\n')", "", id="unknown-cell-magic"),
        pytest.param("get_ipython().run_line_magic('store', '-r x')", "", id="store-magic"),
        pytest.param("get_ipython().run_line_magic('run', 'script.py')", "", id="run-magic"),
        pytest.param("get_ipython().run_line_magic('time', 'y = (')", "", id="magic-code-does-not-parse"),
        pytest.param("get_ipython().run_line_magic(name, 'y = 1')", "name", id="magic-name-not-constant"),
        pytest.param("get_ipython().ev('x')", "", id="other-ipython-call"),
        pytest.param("get_ipython().system('echo {x!r}')", "", id="shell-expression-does-not-parse"),
        pytest.param("w = sys._getframe().f_globals['p']", "sys", id="getframe"),
        pytest.param("w = inspect.currentframe().f_locals", "inspect", id="currentframe"),
        pytest.param("w = f.__globals__['p']", "f", id="function-globals"),
        pytest.param("def f():\n    return sys._getframe(1).f_globals['p']", "", id="getframe-in-def"),
    ],
)
def test_dynamic(source: str, must_read: str) -> None:
    analysis = _analyse(source)
    assert analysis.dynamic, "the analysis must say why it is incomplete"
    assert all(isinstance(reason, str) and reason for reason in analysis.dynamic)
    assert _names(must_read) <= analysis.inputs


def test_dynamic_reasons_are_not_repeated() -> None:
    analysis = _analyse("globals()\nglobals()\nx = globals()")
    assert len(analysis.dynamic) == 1


def test_top_level_await_is_reported_and_await_in_def_is_not() -> None:
    assert _analyse("x = await f()").has_await
    assert _analyse("async with lock:\n    pass").has_await
    assert _analyse("async for i in it:\n    pass").has_await
    assert not _analyse("async def f():\n    await g()").has_await


def test_syntax_error_propagates() -> None:
    with pytest.raises(SyntaxError):
        analyse("x = (")


# -- the magic strings above are what IPython really produces ---------------------------------
@pytest.mark.parametrize(
    ("cell", "inputs", "bound"),
    [
        ("%time y = f(x)", "f get_ipython x", "y"),
        ("%%time\ny = f(x)", "f get_ipython x", "y"),
        ("%timeit -n 3 -r 1 f(x)", "f get_ipython x", ""),
        ("!echo $name {a+b}", "a b get_ipython name", ""),
        ("files = !ls ${folder}", "folder get_ipython", "files"),
        ("%%capture out\ny = f(x)", "f get_ipython x", "out y"),
    ],
)
def test_ipython_transformed_cells(cell: str, inputs: str, bound: str) -> None:
    transformed = TransformerManager().transform_cell(cell)
    analysis = _analyse(transformed)
    assert analysis.inputs == _names(inputs)
    assert analysis.bound == _names(bound)
    assert analysis.dynamic == ()


# -- normalised code ----------------------------------------------------------------------------
def _norm(source: str) -> str:
    return normalised_code(analyse(textwrap.dedent(source))[0])


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("x = 1", "x=1  # set x"),
        ("x = 1", "\n\n# leading comment\nx = 1\n\n"),
        ("x = [1, 2]", "x = [\n    1,\n    2,  # two\n]"),
        ("def f(a):\n    return a", "def f( a ):\n\n    # why\n    return (a)"),
        ("y = f(a, b)", "y = f(a,\n      b)"),
        ("s = 'a'", 's = "a"'),
        ("if c:\n    x = 1", "if c:\n        x = 1  # deeper indent"),
    ],
    ids=["comment", "blank-lines", "line-breaks", "def-spacing", "continuation", "quote-style",
         "indent-width"],
)
def test_normalised_code_ignores_comments_and_whitespace(a: str, b: str) -> None:
    assert _norm(a) == _norm(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("x = 1", "x = 2"),
        ("x = 1", "y = 1"),
        ("x = 1", "x = 1.0"),
        ("x = 1", "x = True"),
        ("x = '1'", "x = b'1'"),
        ("y = f(a, b)", "y = f(b, a)"),
        ("s = 'a'", "s = 'a '"),
        ("def f():\n    'doc'", "def f():\n    'other doc'"),
        ("if c:\n    x = 1\ny = 2", "if c:\n    x = 1\n    y = 2"),
        ("x = a + b * c", "x = (a + b) * c"),
    ],
    ids=["constant", "name", "int-vs-float", "int-vs-bool", "str-vs-bytes", "argument-order",
         "string-content", "docstring", "block-structure", "precedence"],
)
def test_normalised_code_changes_with_the_code(a: str, b: str) -> None:
    assert _norm(a) != _norm(b)


# -- known misses: a name the cell really reads is not reported (could make a hit stale) --------
# Each case is correct once the name is an input, or once the analysis marks the cell dynamic.
MISSED_READS = [
    pytest.param(
        "class C:\n    x = 1\n    def m(self):\n        return x",
        "x", id="method-reads-global-shadowed-by-class-attribute"),
    pytest.param(
        "class C:\n    def helper(self):\n        pass\n    def m(self):\n        return helper()",
        "helper", id="method-calls-global-named-like-a-method"),
    pytest.param(
        "class C:\n    a = 1\n    b = [a for _ in range(3)]",
        "a", id="class-body-comprehension-reads-global"),
    pytest.param(
        "def f():\n    return [x for x in x]",
        "x", id="def-comprehension-shadows-iterable"),
    pytest.param(
        "r = [y := i for i in items]\ny",
        "y", id="walrus-in-comprehension-may-not-run"),
    pytest.param(
        "from contextlib import suppress\nwith suppress(KeyError):\n    y = d['k']\ny",
        "y", id="with-body-may-be-cut-short"),
    pytest.param(
        "match cmd:\n    case {K.A: v}:\n        pass",
        "K", id="match-mapping-key"),
    pytest.param(
        "match cmd:\n    case [a, a.b]:\n        pass",
        "a", id="match-value-pattern-reads-before-capture-binds"),
    pytest.param(
        "res = get_ipython().run_line_magic('timeit', '-o f(x)')",
        "f x", id="timeit-flag-o"),
    pytest.param(
        "get_ipython().run_line_magic('prun', '-r f(x)')",
        "f x", id="prun-flag-r"),
    pytest.param(
        "get_ipython().run_cell_magic('timeit', 'data = load(path)', 'process(data)\\n')",
        "load path", id="cell-timeit-setup-line"),
    pytest.param(
        "def run():\n    get_ipython().system('echo {threshold}')",
        "threshold", id="shell-command-inside-def"),
    pytest.param(
        "ip = get_ipython()\nip.run_cell('y = x')",
        "x", id="ipython-method-through-a-variable"),
    pytest.param(
        "v = get_ipython().user_ns['x']",
        "x", id="user-ns-access"),
    pytest.param(
        "import builtins\nbuiltins.exec('y = x')",
        "x", id="exec-through-builtins-module"),
    pytest.param(
        "def f():\n    def g(a: T) -> R:\n        pass\n    return g",
        "R T", id="nested-def-annotations"),
]


@pytest.mark.parametrize(("source", "must_read"), MISSED_READS)
def test_reads_that_were_missed_once(source: str, must_read: str) -> None:
    analysis = _analyse(source)
    assert _names(must_read) <= analysis.inputs or analysis.dynamic


# -- names a library reads from the step's frame (issue 9) -------------------------------------
# (source, {name: label}): literal strings, read statically; none of these is dynamic.
FRAME_READS = [
    pytest.param("r = df.query('a > @thr and b < @ lo')", {"thr": "df.query:@thr", "lo": "df.query:@lo"},
                 id="query-at-names"),
    pytest.param("r = df.query('`a b` > 1 and c == \"@x\"')", {}, id="backticks-and-strings-read-nothing"),
    pytest.param("r = df.query('a > 1')", {}, id="query-bare-names-are-columns"),
    pytest.param("r = df.eval('c = @k + a')", {"k": "df.eval:@k"}, id="df-eval"),
    pytest.param("r = pd.eval('x + z * 2')", {"x": "pd.eval:x", "z": "pd.eval:z"}, id="pd-eval-bare"),
    pytest.param("r = pl.sql('SELECT a FROM tbl JOIN \"Other\" USING (a)')",
                 {"a": "pl.sql:a", "tbl": "pl.sql:tbl", "Other": "pl.sql:Other"}, id="sql-tables"),
    pytest.param("r = duckdb.query('select * from frame')", {"frame": "duckdb.query:frame"},
                 id="sql-looking-query"),
    pytest.param("r = pl.SQLContext(register_globals=True).execute('SELECT * FROM t')",
                 {"t": "pl.SQLContext().execute:t"}, id="sqlcontext-execute"),
    pytest.param("thr = 2\nr = df.query('a > @thr')", {}, id="bound-in-the-step-first"),
    pytest.param("session.query(User)\nmodel.eval()\ncur.execute(sql_text(q))", {}, id="not-strings"),
    pytest.param("r = ne.evaluate('a * b + 1')", {"a": "ne.evaluate:a", "b": "ne.evaluate:b"},
                 id="numexpr"),
    pytest.param("m = smf.ols('y ~ center(x) + np.log(z)', data=df)",
                 {"y": "a query string:y", "center": "a query string:center", "x": "a query string:x",
                  "np": "a query string:np", "z": "a query string:z"}, id="formula"),
    pytest.param("p = '~/data/x.csv'\nq = 'a ~ b ~ c'", {}, id="home-paths-are-not-formulas"),
    pytest.param("model.evaluate(ds.test, batch_size=32)", {}, id="keras-evaluate"),
]


@pytest.mark.parametrize(("source", "frames"), FRAME_READS)
def test_frame_reads(source: str, frames: dict[str, str]) -> None:
    a = _analyse(source)
    assert dict(a.frames) == frames
    assert not a.dynamic
    assert not set(frames) & a.inputs  # said as frame reads, keyed by the runner


@pytest.mark.parametrize(
    ("source", "frame_strings", "dynamic"),
    [
        ("r = df.query(q)", (("q", "query", "df"),), False),
        ("q = 'a > @t'\nr = df.query(q)", (), True),
        ("r = df.query(f'a > @{name}')", (), True),
        ("r = df.query('a > ' + cond)", (), True),
        ("r = pl.sql(build())", (), True),
    ],
    ids=["input-variable", "bound-in-step", "f-string", "concatenation", "call"],
)
def test_computed_frame_strings(source: str, frame_strings: tuple[tuple[str, str, str], ...],
                                dynamic: bool) -> None:
    a = _analyse(source)
    assert a.frame_strings == frame_strings
    assert bool(a.dynamic) is dynamic


def test_frame_reads_in_a_function_are_its_globals() -> None:
    a = _analyse("def pick(d):\n    return d.query('a > @thr')\nr = pick(df)")
    assert "thr" in a.inputs


# -- environment variables (issue 9) ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "env"),
    [
        ("import os\nr = os.environ['A']", "A"),
        ("import os\nr = os.environ.get('A', 'x')", "A"),
        ("import os\nr = os.getenv('A')", "A"),
        ("from os import environ, getenv\nr = environ['A'] + getenv('B')", "A B"),
        ("import os\nr = 'A' in os.environ", "A"),
        ("import os\nos.environ['A'] = '1'", "A"),
        ("import os\ndef f():\n    return os.environ['A']", "A"),
        ("import os\nr = os.environ[name]", "*"),
        ("import os\nr = dict(os.environ)", "*"),
        ("import os\nr = sorted(os.environ.items())", "*"),
        ("import os\nr = os.getenv(prefix + '_X')", "*"),
        ("get_ipython().run_line_magic('env', 'A')", "A"),
        ("get_ipython().run_line_magic('env', 'A=1')", "A"),
        ("get_ipython().run_line_magic('env', '')", "*"),
        ("get_ipython().run_line_magic('time', \"os.environ['A']\")", "A"),
        ("import os as o\nr = o.environ['A'] + o.getenv('B')", "A B"),
        ("r = env['A']\nr = environment", ""),
        ("get_ipython().system('echo $A ${B}')", "A B"),
        ("get_ipython().run_cell_magic('bash', '', 'echo $A\\nls ${B}/x\\n')", "A B"),
    ],
    ids=["subscript", "get", "getenv", "from-os-import", "in", "set", "in-a-function",
         "computed", "dict", "items", "getenv-computed", "%env", "%env-set", "%env-all",
         "%time", "import-os-as", "other-mappings", "!cmd", "%%bash"],
)
def test_environment_reads(source: str, env: str) -> None:
    assert _analyse(source).env == _names(env)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("get_ipython().run_line_magic('env', 'X=1')\nimport os\nr = os.environ['X']", {"X"}),
        ("import os\nos.environ['X'] = '1'\nr = os.getenv('X')", {"X"}),
        ("import os\nr = os.getenv('X')\nos.environ['X'] = '1'", set()),
        ("import os\nos.environ['X'] = os.environ.get('X', '') + '!'", set()),
        ("import os\ndef f():\n    return os.environ['X']\nos.environ['X'] = '1'", set()),
        ("import os\nr = os.environ[name]\nos.environ['X'] = '1'", set()),
        ("exec(code)\nget_ipython().run_line_magic('env', 'X=1')", set()),
        ("if c:\n    get_ipython().run_line_magic('env', 'X=1')\nr = __import__('os').environ['X']", set()),
        ("get_ipython().run_line_magic('env', 'X')\nget_ipython().run_line_magic('env', 'X=1')", set()),
        ("r = __import__('os').environ['Y']\nget_ipython().run_line_magic('env', 'X=1')", {"X"}),
    ],
    ids=["%env", "os.environ", "read-first", "from-itself", "function-first", "computed-first",
         "exec-first", "conditional", "%env-read-first", "other-variable-first"],
)
def test_env_set_before_any_read(source: str, expected: set[str]) -> None:
    assert analyse(source)[1].env_set_first == expected


def test_import_of_a_module_by_a_literal_name_is_no_dynamic_code() -> None:
    a = analyse("r = __import__('os').environ['X']")[1]
    assert a.dynamic == () and "os" in a.imports and "X" in a.env
    assert analyse("w = __import__('sys').modules['__main__'].p")[1].dynamic
