"""Data parallelism on Paddle's own engine (paddle.distributed.launch).

The launcher sets PADDLE_TRAINERS_NUM and PADDLE_TRAINER_ID for each process;
on CPU the processes talk through gloo. Only rank 0 writes logs and
checkpoints; evaluation shards the data over the ranks and gathers every
sample's outputs, so each evaluation sample is counted exactly once.
"""
import os


class Dist:
    def __init__(self):
        self.world = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
        self.rank = int(os.environ.get("PADDLE_TRAINER_ID", "0"))
        self._ready = False

    @property
    def main(self):
        return self.rank == 0

    def init(self):
        if self.world > 1 and not self._ready:
            import paddle.distributed as pd
            pd.init_parallel_env()
            self._ready = True
        return self

    def wrap(self, model):
        if self.world == 1:
            return model
        import paddle
        return paddle.DataParallel(model)

    def gather(self, obj):
        """[obj of rank 0, obj of rank 1, ...] on every rank."""
        if self.world == 1:
            return [obj]
        import paddle.distributed as pd
        out = []
        pd.all_gather_object(out, obj)
        return out


SINGLE = Dist.__new__(Dist)
SINGLE.world, SINGLE.rank, SINGLE._ready = 1, 0, True
