"""The command-line options repro.verify and repro.report share (and review's private
evaluation), turned into repro.judge.options.Options."""
import os

from repro.boundary.executor import INSTALL, executor_for
from repro.datasets.download import add_data_dir_option, use_data_dir
from repro.errors import ReproError
from repro.judge import audit, coverage, private as private_eval, segments
from repro.judge.contest import protocol_of as contest_protocol, read_contest
from repro.judge.options import Options
from repro.judge.verdict import registered_eval_data





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
    add_cluster_option(ap)
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


def add_cluster_option(ap):
    ap.add_argument("--cluster", metavar="local|auto|ray://HOST:PORT",
                    help="run the recompute and replay workers on a Ray cluster's nodes (each in its own sandbox; "
                         "--jobs tasks in flight): local starts one on this machine, auto or ray://HOST:PORT joins a "
                         f"running one. Needs Ray: {INSTALL}")


def private_of(contest, seed):
    """{(paper, experiment): PrivateEval} of the contest's entries that name a private evaluation;
    the seed of a fresh one comes from the maintainers (--private-seed, $REPRO_PRIVATE_SEED)."""
    entries = [e for e in contest.papers if e.private_eval]
    for i, e in enumerate(contest.papers):
        if "fresh" in e.private_eval:
            same_distribution(e, f"contest file {contest.path}: papers[{i}]: private_eval")
    seed = private_eval.seed_from(seed) if entries else None
    return {(e.plugin, e.experiment): private_eval.PrivateEval(e.private_eval, seed,
                                                               f"the contest's {e.plugin}/{e.experiment}")
            for e in entries}


def same_distribution(entry, at):
    """A fresh private split is drawn by a registered experiment's own generator: it must register
    the very evaluation split the entry judges (its n and sha256), or an honest team's model would
    be scored on another distribution (the shuffled cell's for an unshuffled one) and refused as
    fitted to the test split. A ReproError with one line where it does not."""
    source = entry.private_eval["fresh"]["source"]
    split = next((s for s in entry.eval_data if entry.metric.startswith(f"{s}_")), None)
    if split is None:
        raise ReproError(f"{at}.fresh: the entry needs eval_data for the split its metric {entry.metric!r} judges, "
                         f"to check that {source} registers that split")
    try:
        registered = registered_eval_data(*source.split("/")).get(split)
    except (ReproError, KeyError, AttributeError):
        raise ReproError(f"{at}.fresh.source {source}: not an experiment registered with this harness") from None
    mine = entry.eval_data[split]
    if registered is None or registered[0] != mine[0] or (mine[1] is not None and registered[1] != mine[1]):
        said = f"{registered[0]} samples, sha256 {str(registered[1])[:12]}…" if registered else "no such split"
        raise ReproError(f"{at}.fresh.source {source} registers {split} as {said}, not the entry's ({mine[0]} "
                         f"samples, sha256 {str(mine[1])[:12]}…): its fresh samples would not come from the "
                         f"distribution the runs are judged on")


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
    if args.cluster and not runs_code:
        raise ReproError("--cluster only matters with --recompute or --replay")
    options = Options(args.recompute, args.replay, args.challenge, args.cross_platform, local, args.jobs,
                      args.timeout, progress, protocol_of, sandbox=sandbox, tree=tree, plugin=plugin,
                      threads=threads, private=private, budget=budget,
                      executor=executor_for(args.cluster, jobs=args.jobs))
    if runs_code:
        options.sandbox()  # refuse now, before reading anything, when the sandbox is required and missing
    return options
