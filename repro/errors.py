"""One error type for bad input, and the CLI wrapper that turns it into one line."""
import sys


class ReproError(Exception):
    """A problem with the user's input (config, CLI, data, checkpoint, logs).

    The CLIs print its message as a single line and exit non-zero; no traceback,
    because the message already names what is wrong.
    """


def run_cli(main, argv=None):
    try:
        code = main(argv)
    except ReproError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly, as Unix tools do
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141
    sys.exit(code or 0)
