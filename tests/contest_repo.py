"""A contestant's repository for the contest tests (tests/test_contest.py,
tests/test_review_hostile.py): README, requirements.txt, the tinycell plugin
package (tests/plugin_tinycell.py) and logs of seeds 0 and 1, committed."""
import os
import subprocess

import plugin_tinycell

CONTEST = """name: Tiny contest
deadline: "2027-01-31T23:59:59+08:00"
papers:
  - plugin: tinycell
    experiment: mlp
    metric: test_acc
    measure: accuracy
    value: {value}
    direction: higher
    tolerance: 0.0
    policy: mean_of_n
    n: 2
    seeds: [0, 1]
    audit: 100
    replay: default
    eval_data:
      test: {{n: 1000, sha256: 5b45252af737bb954e45da270fc51c5a15b08af25eab200a3f938b6322903f33}}
    protocol: {{train.steps: 300, train.lr: 0.01, train.batch_size: 100, train.eval_every: 100}}
    source: the tiny contest
"""


def git(repo, *args):
    # objects stored uncompressed: zlib over a bundle's weights and PNGs was most of each commit's time
    subprocess.run(["git", "-C", repo, "-c", "user.name=t", "-c", "user.email=t@t", "-c", "core.compression=0",
                    *args], check=True, capture_output=True)


def commit_of(repo):
    return subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def contest_file(root, value, text=None):
    path = os.path.join(root, f"contest-{value}.yaml")
    with open(path, "w") as f:
        f.write((text or CONTEST).format(value=value))
    return path


def train_runs(repo, plugin, seeds, lite=False):
    """Train the plugin's mlp cell into repo/logs/seed<S> (with --lite: a 20-step smoke run), each
    seed in a process of its own (another test may have imported a package named tinycell)."""
    from conftest import subprocess_cli
    for seed in seeds:
        code, out, err = subprocess_cli("-m", "repro.train", "--papers", plugin, "--paper", "tinycell", "--seed",
                                        str(seed), *(["--lite"] if lite else []),
                                        "--out", os.path.join(repo, "logs", f"seed{seed}"))
        assert code == 0, (out + err)[-3000:]


def make_repo(repo, hidden=None, seeds=(0, 1), lite=False, change=None):
    """A committed contestant's repository at repo; hidden: another width of the MLP (other weights);
    change(plugin folder): what else the contestant wrote into the plugin before its first commit."""
    plugin = plugin_tinycell.write(os.path.join(repo, "tinycell"))
    if change is not None:
        change(plugin)
    if hidden is not None:
        path = os.path.join(plugin, "__init__.py")
        with open(path) as f:
            text = f.read().replace("hidden: int = 32", f"hidden: int = {hidden}")
        with open(path, "w") as f:
            f.write(text)
    with open(os.path.join(repo, "README.md"), "w") as f:
        f.write("# tinycell\n")
    with open(os.path.join(repo, "requirements.txt"), "w") as f:
        f.write("paddlepaddle==3.3.1\nrepro-paddle\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the plugin")
    train_runs(repo, plugin, seeds, lite)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the logs")
    return plugin


def repo_in(tmp_path_factory, name, folder):
    """(root, repo, plugin): make_repo's repository at root/folder, root a fresh temporary folder."""
    root = tmp_path_factory.mktemp(name)
    repo = str(root / folder)
    return root, repo, make_repo(repo)
