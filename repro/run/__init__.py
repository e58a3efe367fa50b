"""Making a run: one update of the recipe (recipe.py; verifiable.py and decisions.py for
train.verifiable), the run directory and its log (rundir.py, runlog.py), checkpoints
(checkpoint.py), mixed precision and processes (amp.py, dist.py), several seeds
(seeds.py) and the progress line (progress.py). repro.train is the loop that uses them;
the judge reads what they write without importing paper code."""
