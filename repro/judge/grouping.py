"""Which worker does what in an audit (issue 33's wall): no worker ever holds a checkpoint at
a step where a segment it replays ends, the final weights never go to a worker that replays,
and recompute runs in a worker that replays nothing.

A run's chosen segments go to two workers, those of even and those of odd index in the run's
whole list of segments: a segment's end is the next segment's start, so neither worker holds
one of its own answers. Two runs' segments never share a worker: the cheater writes every
run's logs, so run B's logged checkpoint can be run A's answer (or that answer perturbed,
which no hash catches), and a worker holding B's start would hold it.

The recompute of every run of one cell (one submission's worker, paper, experiment, lite,
thread count, MKL path and the platform a cluster must give it) is one worker: it gets each
run's final weights and evaluation inputs and replays nothing, so it holds no segment's
answer; one process instead of one a run saves starting the sandbox, Python and Paddle again
for each seed.
"""
from dataclasses import replace


def replay_groups(plan):
    """The chosen segments of one run in worker groups (even and odd index in its whole list)."""
    index = {seg: i for i, seg in enumerate(plan.segments)}
    groups = [[s for s in plan.chosen if index[s] % 2 == parity] for parity in (0, 1)]
    return [g for g in groups if g]


def recompute_cells(plans):
    """The plans that recompute, grouped by the worker that may run them together: [[plan]]."""
    cells = {}
    for plan in plans:
        if plan.recompute:
            head = plan.run.header
            needs = plan.needs
            key = (id(plan.worker), head["paper"], head["exp"], bool(head["lite"]), plan.threads, plan.mkl, needs.gpu,
                   needs.cpu)
            cells.setdefault(key, []).append(plan)
    return list(cells.values())


def cell_needs(plans):
    """What one cell's recompute worker asks of a cluster: its runs' GPU and CPU (one cell shares
    them) and the most memory any of them logged."""
    needs = [plan.needs for plan in plans]
    memory = [n.memory for n in needs if n.memory is not None]
    return replace(needs[0], memory=max(memory) if memory else None)


def worker_tasks(plans):
    """Every worker of an audit: [("recompute", [plans of a cell], None)] then, run by run,
    [("replay", [plan], segments)]."""
    return [("recompute", cell, None) for cell in recompute_cells(plans)] + \
        [("replay", [plan], group) for plan in plans for group in replay_groups(plan)]
