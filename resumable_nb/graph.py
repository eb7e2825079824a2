"""A picture of the pipeline: one node per step (and per ``%gate``), an edge where a step reads a
name an earlier step wrote, each node coloured by its state.

Pure, like :mod:`resumable_nb.view` whose rows it builds on: :func:`pipeline_graph` folds the
journal (the ``inputs`` and ``outputs`` names of ``step_finished`` records) and the notebook's
cells into a :class:`Graph`; :func:`to_dot` writes it for Graphviz (``resumable-nb status
--dot``) and :func:`to_svg` draws it inline for the panel. The colours and labels are those of
:mod:`resumable_nb.states`, so the graph, the table and the CLI say the same thing.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .gates import find_gates, lineage
from .journal import RunView, StepView
from .resume import Cell
from .states import COLORS, StepState, label
from .view import step_rows

__all__ = ["Edge", "Graph", "Node", "pipeline_graph", "to_dot", "to_svg"]


@dataclass(frozen=True, slots=True)
class Node:
    """A step (or a gate: ``id`` is then ``gate:NAME``)."""

    id: str
    name: str
    state: StepState
    saved: float | None = None  # seconds of computing saved by the cache or the resume
    kind: str = "step"  # step | gate
    rank: int = 0  # its column: the longest chain of edges leading to it

    @property
    def label(self) -> str:
        return label(self.state)


@dataclass(frozen=True, slots=True)
class Edge:
    """``source`` wrote ``names`` that ``target`` read (``data``), or a gate stands between them
    (``order``)."""

    source: str
    target: str
    names: tuple[str, ...] = ()
    kind: str = "data"


@dataclass(frozen=True, slots=True)
class Graph:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)


def pipeline_graph(runs: Mapping[str, RunView], run: RunView | None,
                   cells: Sequence[Cell] | None) -> Graph:
    """The graph of ``run`` (None: of the notebook, nothing run): the steps of
    :func:`view.step_rows` in their order, the notebook's gates between them."""
    rows = step_rows(runs, run, cells)
    io = _last_views(runs, run)
    order: list[Node] = [Node(r.name, r.name, r.state, r.saved) for r in rows]
    edges: list[Edge] = []
    # Gates go where the notebook has them: after the last step above them.
    gate_state = _gate_states(runs, run)
    for gate in find_gates(cells or []):
        above = gate.position.split(",")[-1] if gate.position else None
        at = next((i + 1 for i, n in enumerate(order) if n.id == above), 0)
        node = Node(f"gate:{gate.name}", gate.name, gate_state.get(gate.name, "not_run"), kind="gate")
        if at > 0:
            edges.append(Edge(order[at - 1].id, node.id, kind="order"))
        nxt = next((n for n in order[at:] if n.kind == "step"), None)
        if nxt is not None:
            edges.append(Edge(node.id, nxt.id, kind="order"))
        order.insert(at, node)
    writers: dict[str, str] = {}
    for node in order:
        view = io.get(node.id) if node.kind == "step" else None
        if view is None:
            continue
        reads: dict[str, list[str]] = {}
        for name in sorted(view.inputs):
            if name in writers and writers[name] != node.id:
                reads.setdefault(writers[name], []).append(name)
        edges.extend(Edge(src, node.id, tuple(names)) for src, names in reads.items())
        for name in view.outputs:
            writers[name] = node.id
        for name in view.deleted:
            writers.pop(name, None)
    rank: dict[str, int] = {}
    for node in order:  # edges always point forward in this order: one pass is enough
        rank[node.id] = max((rank[e.source] + 1 for e in edges if e.target == node.id
                             and e.source in rank), default=0)
    nodes = tuple(Node(n.id, n.name, n.state, n.saved, n.kind, rank[n.id]) for n in order)
    return Graph(nodes, tuple(edges))


def _last_views(runs: Mapping[str, RunView], run: RunView | None) -> dict[str, StepView]:
    """Each step's last finished execution: in ``run`` and the runs it resumed, else in any
    run (a step not reached this time still has the edges it had)."""
    out: dict[str, StepView] = {}
    for r in runs.values():
        for s in r.steps:
            if s.status != "running":
                out[s.name] = s
    for r in reversed(lineage(runs, run.run) if run is not None else []):
        for s in r.steps:
            if s.status != "running":
                out[s.name] = s
    return out


def _gate_states(runs: Mapping[str, RunView], run: RunView | None) -> dict[str, StepState]:
    states: dict[str, StepState] = {}
    for r in reversed(lineage(runs, run.run) if run is not None else []):
        for g in r.gates:
            states[g.name] = ("waiting" if g.decision is None
                              else "failed" if g.decision == "rejected" else "ran")
    return states


# -- drawing -----------------------------------------------------------------------------------
def _caption(node: Node) -> str:
    text = node.label if node.kind == "step" else f"gate: {_gate_word(node.state)}"
    if node.saved:
        text += f", {node.saved:.2f} s saved"
    return text


def _gate_word(state: StepState) -> str:
    return {"ran": "approved", "failed": "rejected"}.get(state, label(state))


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: Graph, title: str = "pipeline") -> str:
    """Graphviz text: ``resumable-nb status NB --dot | dot -Tsvg > pipeline.svg``."""
    lines = [f"digraph {_quote(title)} {{", "  rankdir=LR;",
             '  node [shape=box, style="rounded,filled", fontcolor=white, fontname=Helvetica];']
    for n in graph.nodes:
        shape = ", shape=diamond" if n.kind == "gate" else ""
        lines.append(f"  {_quote(n.id)} [label={_quote(n.name + chr(10) + _caption(n))}, "
                     f"fillcolor={_quote(COLORS[n.state])}{shape}];")
    for e in graph.edges:
        attrs = "style=dashed" if e.kind == "order" else f"label={_quote(', '.join(e.names))}"
        lines.append(f"  {_quote(e.source)} -> {_quote(e.target)} [{attrs}];")
    lines.append("}")
    return "\n".join(lines)


_W, _H, _GAP_X, _GAP_Y = 150, 46, 50, 22

# A click on a node chooses it in the panel's step list: the <select> of that ipywidgets
# Dropdown, changed as a user would change it, so the widget syncs the choice to the kernel.
_PICK = ("var p=this.closest('.rnb-panel'),s=p&&p.querySelector('.rnb-step-choice select');"
         "if(s){for(var i=0;i<s.options.length;i++){if(s.options[i].textContent===this.dataset.step)"
         "{s.selectedIndex=i;}}s.dispatchEvent(new Event('change',{bubbles:true}));}")


def to_svg(graph: Graph, clickable: bool = False) -> str:
    """The graph as inline SVG: columns by rank; ``clickable`` step nodes choose themselves
    in the panel around them (``.rnb-step-choice``)."""
    if not graph.nodes:
        return "<svg class='rnb-graph' width='0' height='0'></svg>"
    rows: dict[int, int] = {}
    where: dict[str, tuple[int, int]] = {}
    for n in graph.nodes:
        row = rows.get(n.rank, 0)
        rows[n.rank] = row + 1
        where[n.id] = (10 + n.rank * (_W + _GAP_X), 10 + row * (_H + _GAP_Y))
    width = max(x for x, _ in where.values()) + _W + 10
    height = max(y for _, y in where.values()) + _H + 10
    parts = [f"<svg class='rnb-graph' xmlns='http://www.w3.org/2000/svg' width='{width}' "
             f"height='{height}' viewBox='0 0 {width} {height}' font-family='sans-serif' font-size='12'>",
             "<defs><marker id='rnb-arrow' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='7' "
             "markerHeight='7' orient='auto'><path d='M0,0 L10,5 L0,10 z' fill='#57606a'/></marker></defs>"]
    for e in graph.edges:
        (x1, y1), (x2, y2) = where[e.source], where[e.target]
        a, b = (x1 + _W, y1 + _H // 2), (x2, y2 + _H // 2)
        if x2 <= x1:  # same column (never from edges, but be safe): go round the side
            a, b = (x1 + _W // 2, y1 + _H), (x2 + _W // 2, y2)
        dash = " stroke-dasharray='4 3'" if e.kind == "order" else ""
        names = html.escape(", ".join(e.names))
        parts.append(f"<g class='rnb-edge rnb-edge-{e.kind}' data-source='{html.escape(e.source)}' "
                     f"data-target='{html.escape(e.target)}' data-names='{names}'>"
                     f"<title>{html.escape(e.source)} → {html.escape(e.target)}"
                     f"{': ' + names if names else ''}</title>"
                     f"<line x1='{a[0]}' y1='{a[1]}' x2='{b[0]}' y2='{b[1]}' stroke='#57606a' "
                     f"stroke-width='1.5'{dash} marker-end='url(#rnb-arrow)'/></g>")
    for n in graph.nodes:
        x, y = where[n.id]
        color = COLORS[n.state]
        click = (f" onclick=\"{_PICK}\" style='cursor:pointer' role='button' "
                 f"aria-label='choose step {html.escape(n.name)}'") if clickable and n.kind == "step" else ""
        rx = 16 if n.kind == "gate" else 6
        parts.append(f"<g class='rnb-node rnb-node-{n.kind} rnb-state-{n.state}' "
                     f"data-step='{html.escape(n.name)}' "
                     f"data-state='{n.state}' data-color='{color}'{click}>"
                     f"<title>{html.escape(n.name)}: {html.escape(_caption(n))}</title>"
                     f"<rect x='{x}' y='{y}' width='{_W}' height='{_H}' rx='{rx}' fill='{color}'/>"
                     f"<text x='{x + 8}' y='{y + 18}' fill='white' font-weight='600'>"
                     f"{html.escape(n.name[:20])}</text>"
                     f"<text x='{x + 8}' y='{y + 35}' fill='white' font-size='11'>"
                     f"{html.escape(_caption(n)[:26])}</text></g>")
    parts.append("</svg>")
    return "".join(parts)
