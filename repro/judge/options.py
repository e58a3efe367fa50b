"""How far verify goes beyond the logs (Options: recompute, replay, the sandbox, a contest's
submitted tree, what a review knows before the targets are judged), and the command-line
options repro.verify and repro.report share to build it."""
import os
import secrets
import shutil
import tempfile

from repro.boundary import identity, task
from repro.boundary.sandbox import Sandbox, readable_by_workers
from repro.datasets.download import add_data_dir_option, use_data_dir
from repro.errors import ReproError
from repro.judge import audit, coverage, private as private_eval, segments
from repro.judge.contest import protocol_of as contest_protocol, read_contest


class Options:
    """How far verify goes beyond the logs; every tolerance is verify's own choice.

    replay: 0 (none), "default" (the default coverage, repro.judge.audit), "all", or N segments a run.
    sandbox: "required" (bubblewrap or refuse), "auto" (bubblewrap where it works), "off".
    tree/plugin: a submitted repository and its plugin package folder: workers then see a
    read-only snapshot of the tree's identified files alone, and nothing they report is
    trusted beyond tensors."""

    def __init__(self, recompute=False, replay=0, challenge=None, cross_platform=False, local=None, jobs=1,
                 timeout=3600, progress=None, protocol_of=None, sandbox="auto", tree=None, plugin=None,
                 private=None, threads=None, budget=None, earlier=None, refused=()):
        replay = parse_replay(replay)
        # what a contest review knows before this submission's targets are judged: {weights_sha256:
        # repro.judge.copies.Earlier} of earlier submissions' runs (a run holding one is a copy), and the
        # submission's own refusals (its receipt, its files): no target of a refused submission is reached
        self.earlier, self.refused = earlier or {}, list(refused)
        # one submission's time over all its workers, and what failed in it (repro.boundary.task.Budget)
        self.budget = task.Budget(budget)
        self.last_words = []  # [(digest, text)] of failed workers: the maintainers' log, never a page
        # CPU threads of the workers (None: each run's own); a train.verifiable run replays bitwise with any
        self.threads = threads
        self.recompute, self.replay, self.cross_platform = recompute, replay, cross_platform
        self.challenge = challenge or (secrets.token_hex(8) if replay else None)
        self.local, self.jobs, self.timeout, self.progress = local or {}, jobs, timeout, progress
        # what each run is judged against (repro.judge.protocol); None: its paper's own registration
        self.protocol_of = protocol_of
        self.sandbox_mode, self.tree, self.plugin = sandbox, tree, plugin
        self.private = private or {}  # {(paper, exp): repro.judge.private.PrivateEval}: checked with --recompute
        self._sandbox, self._snapshot, self._snapshot_dir = None, None, None
        self._copies, self._copies_dir = None, None
        if not cross_platform and (recompute or replay) and _on_accelerator():
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
        return self.sandbox().describe()

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


def _on_accelerator():
    try:
        import paddle
    except ImportError:
        return False
    return paddle.device.get_device() != "cpu"


def parse_local(items):
    local = {}
    for text in items:
        key, sep, value = text.partition("=")
        if not sep or not key.strip() or not value:
            raise ReproError(f"--local {text!r} is not KEY=PATH")
        local[key.strip()] = os.path.abspath(os.path.expanduser(value)) if "builtin:" not in value else value
    return local


def add_arguments(ap):
    ap.add_argument("--recompute", action="store_true",
                    help="also re-evaluate each run's final checkpoint; the verdict then uses verify's own values")
    # argparse %-formats help, so the share's percent sign is doubled (%%)
    ap.add_argument("--replay", nargs="?", const="default", default=0, metavar="N|all",
                    help="replay audit: re-train segments of each run with the registered recipe and compare with "
                         "its kept checkpoints. With no value, the default coverage: every segment when the registered "
                         f"recipe makes at most {coverage.FULL_REPLAY_SEGMENTS} (steps / required audit interval), "
                         f"else the first, the last and {100 * coverage.DEFAULT_SHARE:.0f}%% of the others drawn from "
                         "the challenge; 'all': every segment; "
                         "N: N segments (the first and the last always)")
    ap.add_argument("--challenge", metavar="SECRET",
                    help="what chooses the replayed segments (default: fresh randomness, printed so the audit "
                         "can be repeated)")
    ap.add_argument("--cross-platform", action="store_true",
                    help="the runs were made on another platform (a GPU, another CPU or thread count): recomputed "
                         f"metrics within {audit.RECOMPUTE_RTOL:g} relative, and each replayed segment, trained "
                         f"twice here in different summation orders, within {segments.MARGIN:g} times their spread "
                         f"where that spread is at most {segments.CHAOS_LIMIT:g} (inconclusive where it is larger)")
    ap.add_argument("--jobs", type=int, default=1, help="audit processes at a time (default 1)")
    ap.add_argument("--threads", type=int, metavar="N",
                    help="CPU threads of the recompute and replay workers (default: each run's own, which a "
                         "bitwise replay needs; a train.verifiable run replays bitwise with any)")
    ap.add_argument("--no-sandbox", action="store_true",
                    help="run the paper code of recompute and replay without the bubblewrap sandbox (a contest "
                         "review refuses to run submitted code unconfined otherwise; every page then says so)")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds one run's audit may take (default 3600)")
    ap.add_argument("--local", action="append", default=[], metavar="KEY=PATH",
                    help="with --recompute/--replay: where this machine keeps a file the run used by path, e.g. "
                         "model.pretrained=/models/sd-v1-5 (only a paper's local-path keys; the file must "
                         "have the sha256 the run logged)")
    add_data_dir_option(ap, "with --recompute/--replay: where this machine keeps the datasets")


def private_of(contest, seed):
    """{(paper, experiment): PrivateEval} of the contest's entries that name a private evaluation;
    the seed of a fresh one comes from the maintainers (--private-seed, $REPRO_PRIVATE_SEED)."""
    entries = [e for e in contest.papers if e.private_eval]
    seed = private_eval.seed_from(seed) if entries else None
    return {(e.plugin, e.experiment): private_eval.PrivateEval(e.private_eval, seed,
                                                               f"the contest's {e.plugin}/{e.experiment}")
            for e in entries}


def options_from(args, progress=None):
    use_data_dir(args)  # the audit's workers get it
    local = parse_local(args.local)
    protocol_of, tree, plugin, sandbox, private, budget = None, None, None, "auto", {}, None
    runs_code = args.recompute or args.replay
    if getattr(args, "contest", None):
        tree = os.path.abspath(args.code) if args.code else None
        contest = read_contest(args.contest)
        protocol_of, budget = contest_protocol(contest, tree), contest.budget
        if args.recompute:
            private = private_of(contest, getattr(args, "private_seed", None))
        sandbox = "required"  # the submitted code is a stranger's
        if runs_code:
            folders = getattr(args, "papers", None) or []
            if tree is None or len(folders) != 1:
                raise ReproError("--contest with --recompute/--replay runs submitted code: give the submitted "
                                 "repository as --code TREE and its plugin package as --papers TREE/PACKAGE")
            plugin = os.path.abspath(folders[0])
            if os.path.commonpath([os.path.realpath(plugin), os.path.realpath(tree)]) != os.path.realpath(tree):
                raise ReproError(f"--papers {folders[0]}: the plugin must be inside the submitted tree --code {args.code}")
    elif getattr(args, "code", None):
        raise ReproError("--code only matters with --contest")
    elif getattr(args, "private_seed", None) is not None:
        raise ReproError("--private-seed only matters with --contest (whose entries name a private evaluation)")
    if getattr(args, "no_sandbox", False):
        sandbox = "off"
    if local and not runs_code:
        raise ReproError("--local only matters with --recompute or --replay")
    if args.jobs < 1 or args.timeout < 1:
        raise ReproError("--jobs and --timeout must be >= 1")
    if args.challenge is not None and not args.replay:
        raise ReproError("--challenge only matters with --replay")
    threads = getattr(args, "threads", None)
    if threads is not None and not 1 <= threads <= 1024:
        raise ReproError(f"--threads must be between 1 and 1024, got {threads}")
    options = Options(args.recompute, args.replay, args.challenge, args.cross_platform, local, args.jobs,
                      args.timeout, progress, protocol_of, sandbox=sandbox, tree=tree, plugin=plugin,
                      threads=threads, private=private, budget=budget)
    if runs_code:
        options.sandbox()  # refuse now, before reading anything, when the sandbox is required and missing
    return options
