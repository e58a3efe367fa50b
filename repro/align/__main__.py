"""python -m repro.align {diff,ladder,convert,drift} ...

  diff A.npy B.npy [--method mean|max|relative] [--threshold 1e-6]
                   [--key KEY=METHOD:THRESHOLD ...] [--report diff.txt]
      compare two reprod_log dumps; exit 1 if any key fails
  ladder --paper P [--exp E] [--steps 3] [--out DIR] [-o key=value ...]
      run the alignment ladder against the paper's reference implementation
  convert --paper P [--exp E] --weights model.pt --out checkpoint.safetensors
      convert PyTorch weights (.pt/.pth, .npz, .safetensors) into a checkpoint
      that repro.eval reads; every unmatched, unused or mis-shaped key is listed
  drift --paper P [--exp E] --seeds 0-9 [--steps N] [--every K] [--json FILE]
      train the port and the reference side by side over the whole schedule from
      the same initial weights; the paired accuracy difference with its 95% interval
"""
import argparse

from repro import hints
from repro.align import convert, drift
from repro.align.diff import compare, load
from repro.align.ladder import Ladder
from repro.align.torch_load import load_state_dict
from repro.config import config_hash
from repro.errors import ReproError, run_cli
from repro.registry import get_paper, parse_with_papers
from repro.run import checkpoint


def _per_key(specs):
    out = {}
    for spec in specs:
        try:
            key, rest = spec.rsplit("=", 1)
            method, thr = rest.split(":")
            out[key] = (method, float(thr))
        except ValueError:
            raise ReproError(f"--key {spec!r} is not KEY=METHOD:THRESHOLD (e.g. logits=max:1e-5)") from None
    return out


def cmd_diff(args):

    result = compare(load(args.a), load(args.b), args.method, args.threshold, _per_key(args.key),
                     title=f"{args.a} vs {args.b}")
    print(result.table())
    if args.report:
        result.write(args.report)
        print(f"report: {args.report}")
    return 0 if result.passed else 1


def _experiment(args):

    paper = get_paper(args.paper)
    exp = paper.experiment(args.exp)
    return paper, exp, paper.config(exp, overrides=args.override)


def cmd_ladder(args):

    paper, exp, cfg = _experiment(args)
    ladder = Ladder(paper, cfg, steps=args.steps, out=args.out).run()
    ladder.write()
    print(f"{paper.name}/{exp.name}: alignment ladder against {paper.reference}, {args.steps} steps")
    print(ladder.table())
    if args.out:
        print(f"dumps and ladder.txt in {args.out} (compare any rung with: python -m repro.align diff "
              f"{args.out}/forward_paddle.npy {args.out}/forward_ref.npy)")
    return 0 if ladder.passed else 1


def cmd_convert(args):
    import paddle


    paper, exp, cfg = _experiment(args)
    paddle.seed(0)
    model = paper.build_model(cfg)
    report = convert.load_into(model, load_state_dict(args.weights))
    sha = checkpoint.save(args.out, model, None, {"paper": paper.name, "exp": exp.name, "step": "0",
                                                  "config_hash": config_hash(cfg), "source": args.weights})
    evaluate = hints.command("repro.eval", "--paper", paper.name, "--exp", exp.name, "--checkpoint", args.out,
                             paper=paper.name, data=True)
    print(f"converted {args.weights}: {report.summary()}\nwrote {args.out} (sha256 {sha[:16]}); "
          f"evaluate it with: {evaluate}")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m repro.align", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("diff", help="compare two reprod_log dumps")
    d.add_argument("a")
    d.add_argument("b")
    d.add_argument("--method", default="mean", help="mean | max | relative (default mean, as reprod_log)")
    d.add_argument("--threshold", type=float, default=1e-6)
    d.add_argument("--key", action="append", default=[], metavar="KEY=METHOD:THRESHOLD")
    d.add_argument("--report", help="also write the table here (and PATH.json)")
    for name in ("ladder", "convert"):
        p = sub.add_parser(name)
        p.add_argument("--paper", required=True)
        p.add_argument("--exp")
        p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
        if name == "ladder":
            p.add_argument("--steps", type=int, default=3)
            p.add_argument("--out", help="write the dumps and ladder.txt here (e.g. RUN_DIR/align)")
        else:
            p.add_argument("--weights", required=True, help="PyTorch weights: .pt/.pth, .npz or .safetensors")
            p.add_argument("--out", required=True, help="the checkpoint to write")
    p = sub.add_parser("drift", help="train the port and the reference side by side from the same initial "
                                      "weights over the whole schedule (repro/align/drift.py)")
    p.add_argument("--paper", required=True)
    p.add_argument("--exp")
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seeds", default="0-9", help="training seeds, e.g. 0-9 (default)")
    p.add_argument("--steps", type=int, help="updates (default: the config's train.steps)")
    p.add_argument("--every", type=int, help="evaluate every K updates (default: train.eval_every)")
    p.add_argument("--json", metavar="FILE", help="append one JSON line per seed and a summary line to FILE")
    p.add_argument("--verbose", action="store_true", help="print every evaluation")
    args = parse_with_papers(ap, argv)
    if args.cmd == "drift":
        return drift.main(args)
    return {"diff": cmd_diff, "ladder": cmd_ladder, "convert": cmd_convert}[args.cmd](args)


if __name__ == "__main__":
    run_cli(main)
