"""Evaluate a checkpoint: python -m repro.eval RUN_DIR (or --paper X [--exp E] --checkpoint FILE)

The data and model come from the experiment's registered config (plus any -o
overrides), never from the checkpoint, so evaluation follows the paper's protocol.
"""
import argparse
import json

if __name__ == "__main__":  # one line, not a traceback, where Paddle is missing
    from repro.errors import require_paddle
    require_paddle()


from repro.datasets.download import add_data_dir_option, use_data_dir
from repro.errors import ReproError, run_cli
from repro.registry import get_paper, parse_with_papers
from repro.run import rundir
from repro.run.evaluation import evaluate


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m repro.eval", description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", nargs="?", metavar="RUN_DIR",
                    help="a run directory: its paper, experiment and --lite come from its log")
    ap.add_argument("--paper", help="the paper (needed for a loose --checkpoint file)")
    ap.add_argument("--exp", default=None, help="experiment (default: the paper's default)")
    ap.add_argument("--checkpoint", help="a checkpoint .safetensors file or a run directory")
    ap.add_argument("--lite", action="store_true", help="use the experiment's --lite config (its smoke data)")
    ap.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    add_data_dir_option(ap)
    args = parse_with_papers(ap, argv)
    use_data_dir(args)
    if bool(args.run_dir) == bool(args.checkpoint):
        raise ReproError("give a RUN_DIR or --checkpoint PATH (one of them)")
    source = args.run_dir or args.checkpoint

    artifact = None
    if rundir.is_run(source):  # a run directory: its last logged checkpoint, checked against its log
        run = rundir.open_run(get_paper, source)
        paper = get_paper(args.paper) if args.paper else run.paper
        exp = paper.experiment(args.exp or run.exp.name)
        if (run.paper.name, run.exp.name) != (paper.name, exp.name):
            raise ReproError(f"{source} is a run of {run.paper.name}/{run.exp.name}, not {paper.name}/{exp.name}")
        cfg = paper.config(exp, lite=args.lite or run.header["lite"], overrides=args.override)
        model, _, meta, _ = rundir.load_trained(run)
        artifact = rundir.read_artifact(run)
    elif args.run_dir:
        raise ReproError(f"{source} is not a run directory (no events.jsonl); give a checkpoint file as --checkpoint")
    else:
        if not args.paper:
            raise ReproError(f"--checkpoint {source} is a loose file: say whose it is with --paper (and --exp)")
        paper = get_paper(args.paper)
        exp = paper.experiment(args.exp)
        cfg = paper.config(exp, lite=args.lite, overrides=args.override)
        model, _, meta = rundir.load_weights(paper, cfg, source)
        if meta.get("paper", paper.name) != paper.name or meta.get("exp", exp.name) != exp.name:
            raise ReproError(f"checkpoint {source} is from {meta.get('paper')}/{meta.get('exp')}, "
                             f"not {paper.name}/{exp.name}")
    results, _ = evaluate(paper, model, cfg, paper.data(cfg, artifact, train=False))
    if args.json:
        print(json.dumps(results))
    else:
        print(f"{paper.name}/{exp.name} checkpoint step {meta.get('step', '?')}")
        for k, v in results.items():
            print(f"  {k:<12} {v:.4f}")
    return 0


if __name__ == "__main__":
    run_cli(main)
