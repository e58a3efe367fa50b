"""How far verify goes beyond the logs (Options: recompute, replay, the sandbox, a contest's
submitted tree, what a review knows before the targets are judged). The command-line options
that build it are repro.judge.arguments'."""
import os
import secrets
import shutil
import tempfile

from repro import machine
from repro.boundary import identity, task
from repro.boundary.sandbox import Sandbox, readable_by_workers
from repro.errors import ReproError


class Options:
    """How far verify goes beyond the logs; every tolerance is verify's own choice.

    replay: 0 (none), "default" (the default coverage, repro.judge.audit), "all", or N segments a run.
    sandbox: "required" (bubblewrap or refuse), "auto" (bubblewrap where it works), "off".
    tree/plugin: a submitted repository and its plugin package folder: workers then see a
    read-only snapshot of the tree's identified files alone, and nothing they report is
    trusted beyond tensors."""

    def __init__(self, recompute=False, replay=0, challenge=None, cross_platform=False, local=None, jobs=1,
                 timeout=3600, progress=None, protocol_of=None, sandbox="auto", tree=None, plugin=None,
                 private=None, threads=None, budget=None, earlier=None, refused=(), executor=task.LOCAL,
                 references=None):
        replay = parse_replay(replay)
        # what a contest review knows before this submission's targets are judged: {weights_sha256:
        # repro.judge.copies.Earlier} of earlier submissions' runs (a run holding one is a copy), and the
        # submission's own refusals (its receipt, its files): no target of a refused submission is reached
        self.earlier, self.refused = earlier or {}, list(refused)
        # one submission's time over all its workers, and what failed in it (repro.boundary.task.Budget)
        self.budget = task.Budget(budget, jobs)  # --jobs workers in flight share what is left of it
        self.last_words = []  # [(digest, text)] of failed workers: the maintainers' log, never a page
        # CPU threads of the workers (None: each run's own); a train.verifiable run replays bitwise with any
        self.threads = threads
        # where the workers run: this machine, or a Ray cluster's nodes (repro.boundary.executor); the
        # judge, its receipts and its ledger stay here either way
        self.executor = executor
        # where the registered cells' reference sets are (repro.judge.references; None: beside the logs)
        self.references = references
        self.recompute, self.replay, self.cross_platform = recompute, replay, cross_platform
        self.challenge = challenge or (secrets.token_hex(8) if replay else None)
        self.local, self.jobs, self.timeout, self.progress = local or {}, jobs, timeout, progress
        # what each run is judged against (repro.judge.protocol); None: its paper's own registration
        self.protocol_of = protocol_of
        self.sandbox_mode, self.tree, self.plugin = sandbox, tree, plugin
        self.private = private or {}  # {(paper, exp): repro.judge.private.PrivateEval}: checked with --recompute
        self._sandbox, self._snapshot, self._snapshot_dir = None, None, None
        self._copies, self._copies_dir = None, None
        if not cross_platform and (recompute or replay) and machine.on_accelerator():
            self.cross_platform = True  # GPU kernels are not bitwise reproducible, not even run to run

    def sandbox(self):
        if self._sandbox is None:
            self._sandbox = Sandbox(self.sandbox_mode)
        return self._sandbox

    def snapshot(self):
        """A read-only copy of exactly the submitted tree's identified files (made once),
        which is all of the submission a worker sees."""
        if self._snapshot is None:
            files, problems = identity.scan(self.tree)
            if problems:
                raise ReproError(f"the submitted code cannot be run: {problems[0]}"
                                 + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
            self._snapshot_dir = tempfile.TemporaryDirectory(prefix="repro-snapshot-")
            self._snapshot = identity.snapshot(self.tree, files, os.path.join(self._snapshot_dir.name, "tree"))
        return self._snapshot

    def plugin_copies(self, folders):
        """Copies of the user's own plugin folders (made once) that the workers import: the
        worker is another user (uid 65534), who may not read a folder of the user's own, and it
        sees nothing beside the package (never the runs next to it)."""
        if self._copies is None:
            self._copies_dir = tempfile.TemporaryDirectory(prefix="repro-plugins-")
            self._copies = []
            for i, folder in enumerate(folders):
                dest = os.path.join(self._copies_dir.name, str(i), os.path.basename(os.path.abspath(folder)))
                shutil.copytree(folder, dest, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                readable_by_workers(os.path.dirname(dest))
                self._copies.append(dest)
        return self._copies

    def sandbox_text(self):
        if not (self.recompute or self.replay):
            return "no code run"
        where = "" if self.executor is task.LOCAL else f" on the nodes of a {self.executor.where}"
        return self.sandbox().describe() + where

    def checks(self):
        """The checks verify makes of every run, in words (the page and review.json say them)."""
        parts = ["logs"]
        if self.tree:
            parts.append("code identity")
        if self.recompute:
            parts.append("recompute")
        if self.recompute and self.private:
            parts.append("private evaluation")
        if self.replay:
            parts.append("replay")
        return parts

    def assurance(self):
        """The checks, as verify's last line and a results file say them (with the replay's coverage)."""
        words = {"recompute": "recomputed metrics"}
        if self.replay:
            what = {"default": "the default coverage", "all": "every segment"}.get(self.replay,
                                                                                 f"{self.replay} segments")
            words["replay"] = f"replay audit of {what} per run (challenge {self.challenge})"
        parts = [words.get(c, c) for c in self.checks()]
        text = ", ".join(parts) + (" [cross-platform tolerances]" if self.cross_platform else "")
        if self.recompute or self.replay:
            text += f"; paper code ran with the sandbox {self.sandbox_text()}"
        return text


def parse_replay(value):
    """0, an int N >= 2, 'default' or 'all' (a ReproError otherwise)."""
    if value in (None, 0, False):
        return 0
    if value in ("default", "all"):
        return value
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if type(value) is not int or value < 2:
        raise ReproError(f"--replay {str(value)[:20]}: give N >= 2 (the first and the last segment are always "
                         f"replayed), 'all', or nothing for the default coverage")
    return value
