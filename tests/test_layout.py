"""The shape of the code: layers import downwards only, one module per job, and
the harness core stays out of the text-to-image family's way."""
import ast
import fnmatch
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO


def imports(path):
    """Modules a Python file imports (absolute names; relative ones resolved within its package)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    package = os.path.relpath(os.path.dirname(path), REPO).replace(os.sep, ".")
    if package.split(".")[0] in ("metrics", "papers"):  # installed (and imported) as repro.metrics, repro.papers
        package = "repro." + package
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}
    return out


def files(folder):
    for root, _, names in os.walk(os.path.join(REPO, folder)):
        for name in names:
            if name.endswith(".py"):
                yield os.path.join(root, name)


def test_metrics_depend_on_nothing_of_repro_but_errors_and_the_registry():
    for path in files("metrics"):
        bad = {m for m in imports(path) if m.startswith("repro") and not m.startswith("repro.metrics") and
               m not in ("repro.errors", "repro.errors.ReproError", "repro.names", "repro.names.Registry")}
        assert not bad, (path, bad)


def test_align_and_metrics_never_import_the_training_cli_or_each_other():
    for path in files("repro/align"):
        assert not {m for m in imports(path) if m.startswith(("repro.train", "metrics", "repro.metrics"))}, path
    for path in files("metrics"):
        assert not {m for m in imports(path) if m.startswith(("repro.align", "repro.train"))}, path


def test_metrics_and_papers_are_imported_as_repro_metrics_and_repro_papers():
    """One name in site-packages (repro); a checkout maps its top-level folders the same way."""
    for folder in ("repro", "metrics", "papers", "tests", "benchmarks"):
        for path in files(folder):
            bad = {m for m in imports(path) if m.split(".")[0] in ("metrics", "papers")}
            assert not bad, (path, bad)


def test_no_paper_imports_another_paper():
    papers = [d for d in os.listdir(os.path.join(REPO, "papers")) if os.path.isdir(os.path.join(REPO, "papers", d))]
    for paper in papers:
        for path in files(f"papers/{paper}"):
            others = {m for m in imports(path) for p in papers if p != paper
                      and (m.startswith(f"papers.{p}") or m.startswith(f"repro.papers.{p}"))}
            assert not others, (path, others)


# two doors into the family, each inside a function so that importing the core never loads it
# (issue 28): review hands a text-to-image bundle to the family's judge, and the worker (a program
# started in the sandbox) draws a bundle's works again
DOORS = {os.path.join("repro", "judge", "assess.py"): "repro.diffusion.judge",
         os.path.join("repro", "worker.py"): "repro.diffusion.redraw"}


def module_level_imports(path):
    tree = ast.parse(open(path, encoding="utf-8").read())
    return {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names} | \
        {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}


def test_the_core_never_imports_a_paper_or_the_diffusion_family():
    core = [p for p in files("repro") if os.sep + "diffusion" + os.sep not in p]
    for path in core:
        door = DOORS.get(os.path.relpath(path, REPO))
        bad = {m for m in imports(path) if m.startswith(("papers", "repro.papers", "repro.diffusion", "ppdiffusers"))
               and not (door and (m == door or m.startswith(door + ".")))}
        assert not bad, (path, bad)
        if door:
            assert not {m for m in module_level_imports(path) if m.startswith("repro.diffusion")}, path


def test_only_the_run_directory_module_names_a_run_file():
    """Docstrings may describe the layout; code asks repro.run.rundir for it."""
    names = {"events.jsonl", "config.yaml", "train.log", "checkpoints", "checkpoint.safetensors", "vdl"}
    for path in files("repro"):
        if path.endswith(os.path.join("repro", "run", "rundir.py")):
            continue
        tree = ast.parse(open(path, encoding="utf-8").read())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                      and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                assert node.value not in names, (path, node.lineno, node.value)


@pytest.mark.parametrize("argv", [["-m", "repro.train", "--list"],
                                  ["-m", "repro.verify", "logs/mnist1d/logreg/seed0"],
                                  ["-m", "repro.review", "--help"],
                                  ["-m", "repro.report", "logs/mnist1d/logreg/seed0", "--out", "{tmp}/r.html"]])
def test_train_verify_and_report_never_import_ppdiffusers(argv, tmp_path):
    code = ("import runpy, sys; sys.argv = {argv!r}; "
            "import atexit; atexit.register(lambda: print('PPDIFFUSERS', 'ppdiffusers' in sys.modules, "
            "'PADDLENLP', 'paddlenlp' in sys.modules, file=sys.stderr)); "
            "runpy.run_module({mod!r}, run_name='__main__')")
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    p = subprocess.run([sys.executable, "-c", code.format(argv=[args[1], *args[2:]], mod=args[1])], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert "PPDIFFUSERS False" in p.stderr and "PADDLENLP False" in p.stderr, p.stderr[-2000:]


# the judge, by folder (issue 35): repro/judge/ decides, repro/boundary/ is the wall's judge side
# (sandbox, identity, tree scanning, git safety, the exchange format), repro/pages/ renders what was
# decided; with them, every harness module they import (what they read with, transitively) and the commands that
# drive them (the modules that import them). The untrusted side is repro/worker.py alone.
JUDGE_FOLDERS = ("repro/judge", "repro/boundary", "repro/pages")
UNTRUSTED = "repro/worker.py"  # python -m repro.worker: it imports the exchange format to hand data back


def judge_modules():
    """Relative paths of the judge: its folders, the harness modules they import, and the commands
    (python -m repro.X modules) that import them."""
    def rel(name):
        base = os.path.join(REPO, *name.split("."))
        return next((os.path.relpath(p, REPO) for p in (base + ".py", os.path.join(base, "__init__.py"))
                     if os.path.isfile(p)), None)
    inside = {os.path.relpath(p, REPO) for folder in JUDGE_FOLDERS for p in files(folder)}
    used, todo = set(), set(inside)
    while todo:  # what the judge reads with, and what that reads with, down to the leaves
        found = {rel(m) for p in todo for m in imports(os.path.join(REPO, p)) if m.startswith("repro.")}
        todo = found - {None, UNTRUSTED, "repro/registry.py"} - used - inside
        used |= todo
    names = {r[:-3].replace(os.sep, ".") for r in inside}
    drivers = {os.path.relpath(p, REPO) for p in files("repro") if os.path.relpath(p, REPO)[:-3].replace(os.sep, ".")
               in command_modules() and imports(p) & names}
    # registry.py is the paper discovery itself: the judge may take its names (ENV, ONLY) but never
    # call it (RUNS_PAPER_CODE names its doors)
    return sorted((inside | used | drivers) - {"repro/__init__.py", "repro/registry.py", UNTRUSTED})


RUNS_PAPER_CODE = ("repro.worker", "repro.run.recipe", "repro.run.evaluation", "repro.train", "repro.paper",
                   "repro.eval", "repro.papers",
                   "repro.inference", "repro.export", "repro.registry.get_paper", "repro.registry.load_papers")


def test_the_judge_never_imports_what_runs_paper_code():
    """The trust boundary (issue 22): the judge reads files, compares and decides; only the
    sandboxed worker (repro/worker.py) imports a paper. The one door to a paper's own code in
    the judge is the registered protocol of a paper this harness or its user registered
    (verdict.registered), never used against a contest's submission."""
    judge = judge_modules()
    assert {"repro/verify.py", "repro/review.py", "repro/judge/verdict.py", "repro/boundary/sandbox.py",
            "repro/boundary/exchange.py", "repro/pages/contest.py", "repro/targets.py"} <= set(judge), judge
    assert not [p for p in files("repro/boundary") if "repro.worker" in imports(p) or p.endswith("worker.py")]
    for rel in judge:
        bad = {m for m in imports(os.path.join(REPO, rel)) if m.startswith(RUNS_PAPER_CODE)}
        if rel == "repro/judge/verdict.py":
            bad -= {"repro.registry.get_paper"}
        assert not bad, (rel, bad)
    worker_users = [p for folder in ("repro",) for p in files(folder) if "repro.worker" in imports(p)]
    assert worker_users == [], worker_users  # started as a program by the sandbox, never imported


# The harness's own imports sit at the top of each module, where the graph can be read. These
# are the only ones left inside functions, each for a heavy or optional dependency it would
# otherwise bring into every importer: {(module file, imported repro module): why}.
LOCAL_IMPORTS = {
    ("repro/judge/assess.py", "repro.diffusion.judge"): "the text-to-image family (ppdiffusers), only for such contests",
    ("repro/worker.py", "repro.diffusion.redraw"): "the text-to-image family, only for the redraw task",
    ("repro/worker.py", "repro.run.evaluation"): "Paddle, only for the model task",
    ("repro/diffusion/scoring.py", "repro.metrics.inception"): "Paddle's Inception network, only for FID",
    ("repro/boundary/sandbox.py", "repro"): "the package's own folder, found at run time",
}


def local_repro_imports(path):
    """{imported repro module} of the imports inside functions and classes of a file."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    out = set()
    for top in tree.body:
        if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for node in ast.walk(top):
                if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("repro"):
                    out.add(node.module)
                elif isinstance(node, ast.Import):
                    out |= {a.name for a in node.names if a.name.split(".")[0] == "repro"}
    return out


def test_the_harness_imports_its_own_modules_at_the_top_but_for_the_listed_few():
    found = {}
    for folder in ("repro", "metrics"):
        for path in files(folder):
            rel = os.path.relpath(path, REPO).replace(os.sep, "/")
            for mod in local_repro_imports(path):
                found[(rel, mod)] = True
    unlisted = sorted(k for k in found if k not in LOCAL_IMPORTS)
    assert not unlisted, f"imports inside functions (move them to the top, or list them with the reason): {unlisted}"
    assert sorted(k for k in LOCAL_IMPORTS if k not in found) == [], "a listed local import is gone: drop it here"


def file_level_imports(path):
    """module_level_imports, with `from repro import x` naming module repro.x."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    return module_level_imports(path) | {f"{n.module}.{a.name}" for n in tree.body
                                         if isinstance(n, ast.ImportFrom) and n.module for a in n.names}


def module_graph(imported):
    """{harness module: the harness modules it imports}, imported(path) giving a file's imports."""
    graph = {}
    for folder in ("repro", "metrics"):
        for path in files(folder):
            rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
            name = ("repro." + rel if rel.startswith("metrics") else rel).removesuffix(".__init__")
            graph[name] = {m for m in imported(path) if m.startswith("repro")}
    return {k: {m for m in v if m in graph and m != k} for k, v in graph.items()}


def test_no_import_cycle_among_the_harness_modules():
    graph = module_graph(imports)  # every import, those inside functions too (issue 35): a local import hides a cycle
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != "open", f"import cycle: {' -> '.join(path + [node, nxt])}"
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = "done"
    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def ignored_folder(name):
    """Whether .gitignore ignores the top-level folder name (a build's build/, dist/ and
    *.egg-info/, a virtual environment): what a build or an install leaves is not the layout."""
    with open(os.path.join(REPO, ".gitignore"), encoding="utf-8") as f:
        rules = [ln.strip().rstrip("/") for ln in f if ln.strip().endswith("/") and not ln.startswith(("#", "!"))]
    return any(fnmatch.fnmatchcase(name, rule.lstrip("/")) for rule in rules)


def test_build_outputs_are_not_layout():
    assert ignored_folder("build") and ignored_folder("dist") and ignored_folder("repro_paddle.egg-info")
    assert not ignored_folder("repro") and not ignored_folder("templates")


def test_the_readme_layout_names_every_module_and_folder_of_the_harness():
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    layout = text[text.index("## Layout"):]
    layout = layout[:layout.index("```", layout.index("```") + 3)]
    words = set(re.findall(r"[\w/]+(?:\.py)?", layout))
    names = {n for sub in ("", "run", "judge", "boundary", "pages") for n in os.listdir(os.path.join(REPO, "repro", sub))
             if n.endswith(".py") and n != "__init__.py"}
    folders = {n + "/" for n in os.listdir(os.path.join(REPO, "repro"))
               if os.path.isdir(os.path.join(REPO, "repro", n)) and not n.startswith(("_", "."))}
    top = {n + "/" for n in os.listdir(REPO) if os.path.isdir(os.path.join(REPO, n)) and not n.startswith(".")
           and n not in ("shared",) and not ignored_folder(n)}
    missing = sorted(n for n in names | folders | top if n not in words and n.rstrip("/") + "/" not in words)
    assert not missing, f"README's Layout does not name: {missing}"


def test_making_a_run_never_imports_the_judge():
    """train and repro/run/ make runs; the judge (repro.verify, repro/judge/) reads what they
    wrote. --seeds verifies in a process of its own, so training never imports the judge."""
    for path in [os.path.join(REPO, "repro", "train.py")] + list(files(os.path.join("repro", "run"))):
        bad = {m for m in imports(path) if m.startswith(("repro.verify", "repro.judge", "repro.review"))}
        assert not bad, (path, bad)
    for path in files(os.path.join("repro", "run")):  # a run directory is opened with the paper it names,
        assert not {m for m in imports(path) if m.startswith("repro.registry")}, path  # found by the caller


def command_modules():
    """The modules run as python -m repro.X: those with a __main__ block (and the package mains)."""
    out = set()
    for path in files("repro"):
        text = open(path, encoding="utf-8").read()
        if 'if __name__ == "__main__":' in text or path.endswith("__main__.py"):
            out.add(os.path.relpath(path, REPO)[:-3].replace(os.sep, "."))
    return out


def test_commands_are_leaves():
    """STYLE 17 (issue 35): a command holds argparse, its epilog and main; what it drives lives in
    library modules. No module of the harness, paper or metric imports a command, at any level."""
    commands = command_modules()
    assert {"repro.train", "repro.verify", "repro.review", "repro.eval"} <= commands
    for folder in ("repro", "metrics", "papers"):
        for path in files(folder):
            me = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
            bad = {m for m in imports(path) for c in commands if (m == c or m.startswith(c + ".")) and m != me}
            assert not bad, (path, bad)


# Import floors: the longest chain of file-level imports among the harness's modules (errors is floor 1,
# a command at the top). Issue 35 asks for at most 8: a command, the review, the verdict, the audit,
# the task or a run's files, what they parse with, strict, errors.
MAX_FLOORS = 8


def test_the_import_graph_has_few_floors():
    graph = module_graph(file_level_imports)
    floor = {}

    def of(name):
        if name not in floor:
            floor[name] = 0  # a cycle is test_no_import_cycle's to name
            floor[name] = 1 + max((of(m) for m in graph[name]), default=0)
        return floor[name]
    worst = max(graph, key=of)
    assert of(worst) <= MAX_FLOORS, f"{worst} stands on {of(worst)} floors of imports"
