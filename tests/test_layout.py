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
DOORS = {os.path.join("repro", "review.py"): "repro.diffusion.judge",
         os.path.join("repro", "boundary", "worker.py"): "repro.diffusion.redraw"}


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


# the judge: every module of repro/judge/, the commands that decide, and what they read with
JUDGE = tuple(sorted(f"repro/judge/{n}" for n in os.listdir(os.path.join(REPO, "repro", "judge")) if n.endswith(".py"))) + (
    "repro/verify.py", "repro/review.py", "repro/boundary/sandbox.py", "repro/boundary/task.py", "repro/targets.py",
    "repro/run/runlog.py", "repro/run/checkpoint.py", "repro/diffusion/judge.py", "repro/diffusion/judge_redraw.py",
    "repro/diffusion/card.py", "repro/diffusion/bundle_files.py", "repro/diffusion/judge_records.py")
RUNS_PAPER_CODE = ("repro.boundary.worker", "repro.run.recipe", "repro.train", "repro.paper", "repro.eval", "repro.papers",
                   "repro.inference", "repro.export", "repro.registry.get_paper", "repro.registry.load_papers")


def test_the_judge_never_imports_what_runs_paper_code():
    """The trust boundary (issue 22): the judge reads files, compares and decides; only the
    sandboxed worker (repro/boundary/worker.py) imports a paper. The one door to a paper's own code in
    the judge is the registered protocol of a paper this harness or its user registered
    (compliance.registered), never used against a contest's submission."""
    for rel in JUDGE:
        bad = {m for m in imports(os.path.join(REPO, rel)) if m.startswith(RUNS_PAPER_CODE)}
        if rel == "repro/judge/compliance.py":
            bad -= {"repro.registry.get_paper"}
        assert not bad, (rel, bad)
    worker_users = [p for folder in ("repro",) for p in files(folder) if "repro.boundary.worker" in imports(p)]
    assert worker_users == [], worker_users  # started as a program by the sandbox, never imported


# The harness's own imports sit at the top of each module, where the graph can be read. These
# are the only ones left inside functions, each for a heavy or optional dependency it would
# otherwise bring into every importer: {(module file, imported repro module): why}.
LOCAL_IMPORTS = {
    ("repro/review.py", "repro.diffusion.judge"): "the text-to-image family (ppdiffusers), only for such contests",
    ("repro/boundary/worker.py", "repro.diffusion.redraw"): "the text-to-image family, only for the redraw task",
    ("repro/boundary/worker.py", "repro.eval"): "Paddle, only for the model task",
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


def test_no_import_cycle_among_the_harness_modules():
    graph = {}
    for folder in ("repro", "metrics"):
        for path in files(folder):
            rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
            name = ("repro." + rel if rel.startswith("metrics") else rel).removesuffix(".__init__")
            graph[name] = {m for m in module_level_imports(path) if m.startswith("repro")}
            tree = ast.parse(open(path, encoding="utf-8").read())  # `from repro import x` names module repro.x
            graph[name] |= {f"{n.module}.{a.name}" for n in tree.body if isinstance(n, ast.ImportFrom)
                            and n.module and n.module.startswith("repro") for a in n.names}
    graph = {k: {m for m in v if m in graph and m != k} for k, v in graph.items()}
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
    names = {n for sub in ("", "run", "judge", "boundary") for n in os.listdir(os.path.join(REPO, "repro", sub))
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
