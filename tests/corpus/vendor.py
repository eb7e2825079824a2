"""Rebuild tests/corpus/notebooks/ from the upstream repositories (maintainers only; the tests
read the vendored copies).

    python tests/corpus/vendor.py /path/to/mirrors

``/path/to/mirrors/<owner>+<name>/repo`` is a bare git clone of each repository below, at the
commit listed. Each notebook is copied with its outputs and execution counts stripped; the code
cells listed in ``drop`` (0-based indices among the notebook's code cells) are removed, with the
reason recorded in SOURCES.md. Everything else is kept verbatim, markdown included.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

REPOS = {
    "ageron/handson-ml2": ("1e2115277b50f6c584cd668fa30e3af309a5b136", "Apache-2.0", "LICENSE"),
    "jrjohansson/scientific-python-lectures": ("a2a76136ac06ff5fa91343ae095f1223c914d944", "CC-BY-3.0",
                                               "README.md"),
    "matplotlib/AnatomyOfMatplotlib": ("e51eb6363371f1b271b235a63f859dbd984ff756", "CC-BY-3.0",
                                       "COPYRIGHT.txt"),
}

NPY2 = "uses an alias removed in NumPy 2 (np.infty / np.int / np.object)"
PD3 = "pandas 3 API changes (frequency aliases H/A, DataFrame.append, categories setter, pivot of str)"

# name: (repo, path, {code cell index: why it was dropped})
NOTEBOOKS: dict[str, tuple[str, str, dict[int, str]]] = {
    "hml2_tools_numpy": ("ageron/handson-ml2", "tools_numpy.ipynb", {}),
    "hml2_tools_pandas": ("ageron/handson-ml2", "tools_pandas.ipynb", {
        8: "raises KeyError under pandas 3 (positional s2[1])",
        **{i: PD3 + ", or uses a name such a cell defines" for i in
           (*range(23, 39), 43, 46, 47, 48, 119, 146, 149) if i != 37},
        54: NPY2}),
    "hml2_math_linear_algebra": ("ageron/handson-ml2", "math_linear_algebra.ipynb", {}),
    "hml2_extra_gradient_descent_comparison": ("ageron/handson-ml2",
                                               "extra_gradient_descent_comparison.ipynb", {}),
    "hml2_06_decision_trees": ("ageron/handson-ml2", "06_decision_trees.ipynb", {
        2: "needs graphviz (not installed)", 14: "needs graphviz", 15: "needs graphviz",
        **{i: "exercise solution: a 10 s grid search and a 1000-tree forest (too slow for CI)"
           for i in range(19, 27)}}),
    "spl_lecture1_python": ("jrjohansson/scientific-python-lectures",
                            "Lecture-1-Introduction-to-Python-Programming.ipynb", {
        17: "raises on purpose (NameError demo)", 31: "raises on purpose (TypeError demo)",
        82: "raises on purpose (tuple assignment demo)", 88: "raises on purpose (IndentationError demo)",
        126: "Python 2 only (reload)", 127: "raises on purpose (raise Exception demo)",
        130: "needs the version_information extension"}),
    "spl_lecture2_numpy": ("jrjohansson/scientific-python-lectures", "Lecture-2-Numpy.ipynb", {
        11: "raises on purpose", 99: "raises on purpose (shape mismatch demo)",
        164: "raises on purpose (truth value demo)", 177: "needs the version_information extension",
        **{i: "reads the data file stockholm_td_adj.dat (not vendored), or uses data from it"
           for i in (28, 29, 30, 111, 112, 113, 114, 115, 123, 124, 125, 126)}}),
    "spl_lecture4_matplotlib": ("jrjohansson/scientific-python-lectures", "Lecture-4-Matplotlib.ipynb", {
        67: "writes an mp4 animation (needs ffmpeg; 8 s)",
        69: "matplotlib.rcsetup.all_backends was removed", 75: "switches to the Qt4Agg backend",
        77: "needs the version_information extension"}),
    "amp_part0_numpy": ("matplotlib/AnatomyOfMatplotlib", "AnatomyOfMatplotlib-Part0-Intro2NumPy.ipynb", {}),
    "amp_part1_figures": ("matplotlib/AnatomyOfMatplotlib",
                          "AnatomyOfMatplotlib-Part1-Figures_Subplots_and_layouts.ipynb", {
        13: "%load of an exercise file (not vendored)"}),
    "amp_part3_speak_mpl": ("matplotlib/AnatomyOfMatplotlib",
                            "AnatomyOfMatplotlib-Part3-HowToSpeakMPL.ipynb", {
        1: "%load of an exercise file (not vendored)", 4: "%load of an exercise file (not vendored)",
        5: "an exercise left blank on purpose (SyntaxError)", 9: "%load of an exercise file (not vendored)"}),
    "amp_part4_limits_legends": ("matplotlib/AnatomyOfMatplotlib",
                                 "AnatomyOfMatplotlib-Part4-Limits_Legends_and_Layouts.ipynb", {
        8: "%load of an exercise file (not vendored)", 17: "%load of an exercise file (not vendored)"}),
}


def vendor(mirrors: Path) -> None:
    out = HERE / "notebooks"
    out.mkdir(exist_ok=True)
    for name, (repo, path, drop) in NOTEBOOKS.items():
        commit = REPOS[repo][0]
        git = mirrors / repo.replace("/", "+") / "repo"
        nb = json.loads(subprocess.check_output(["git", "--git-dir", str(git), "show", f"{commit}:{path}"]))
        cells, code_index = [], -1
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                code_index += 1
                if code_index in drop:
                    continue
                cell["outputs"] = []
                cell["execution_count"] = None
            cell.pop("attachments", None) if cell["cell_type"] == "markdown" else None
            cells.append(cell)
        nb["cells"] = cells
        nb["metadata"] = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                          "corpus_source": {"repository": repo, "path": path, "commit": commit}}
        (out / f"{name}.ipynb").write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    for repo, (commit, _licence, licence_path) in REPOS.items():
        git = mirrors / repo.replace("/", "+") / "repo"
        text = subprocess.check_output(["git", "--git-dir", str(git), "show", f"{commit}:{licence_path}"])
        (HERE / "LICENSES" / f"{repo.replace('/', '+')}-{Path(licence_path).name}").write_bytes(text)
    (HERE / "SOURCES.md").write_text(sources_md())


def sources_md() -> str:
    lines = [
        "# Where the corpus notebooks come from",
        "",
        "Public teaching notebooks, vendored by `tests/corpus/vendor.py` with outputs and execution",
        "counts stripped and the notebook metadata replaced by a kernelspec and the source below.",
        "Every cell not listed as dropped is kept verbatim (markdown included). Cell numbers are",
        "0-based indices among the upstream notebook's code cells. Licences: `LICENSES/`.",
        "",
        "| repository | licence | commit | licence text |",
        "|---|---|---|---|",
    ]
    for repo, (commit, licence, licence_path) in REPOS.items():
        lines.append(f"| [{repo}](https://github.com/{repo}) | {licence} | `{commit}` | "
                     f"`LICENSES/{repo.replace('/', '+')}-{Path(licence_path).name}` |")
    lines += ["", "| notebook | repository | upstream path | code cells dropped (why) |", "|---|---|---|---|"]
    for name, (repo, path, drop) in NOTEBOOKS.items():
        by_reason: dict[str, list[int]] = {}
        for i, why in sorted(drop.items()):
            by_reason.setdefault(why, []).append(i)
        dropped = "; ".join(f"{', '.join(map(str, cells))}: {why}" for why, cells in by_reason.items())
        lines.append(f"| `{name}.ipynb` | {repo} | `{path}` | {dropped or 'none'} |")
    lines += ["", "The jrjohansson/scientific-python-lectures and matplotlib/AnatomyOfMatplotlib texts are",
              "under CC-BY 3.0 (attribution: the authors named in their licence files); we changed them only",
              "by dropping the cells listed and stripping outputs. ageron/handson-ml2 is Apache-2.0.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    vendor(Path(sys.argv[1]))
