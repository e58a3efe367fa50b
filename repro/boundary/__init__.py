"""The trust boundary: which files are a submission's code (identity.py), the sandbox
every process that imports paper code runs in (sandbox.py, bubblewrap), and that
process (worker.py), which gets inputs and hands back tensors, never a verdict."""
