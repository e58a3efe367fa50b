"""One error type for bad input, and the CLI wrapper that turns it into one line."""
import sys


class ReproError(Exception):
    """A problem with the user's input (config, CLI, data, checkpoint, logs).

    The CLIs print its message as a single line and exit non-zero; no traceback,
    because the message already names what is wrong.
    """


# the harness declares Paddle as its extra [paddle], not as a dependency (pyproject.toml says why)
NO_PADDLE = ("Paddle is not installed in this Python environment: install its CPU build, "
             "pip install paddlepaddle==3.3.1 (what the harness's extra [paddle] brings), or on a GPU machine "
             "paddlepaddle-gpu==3.3.1 (https://www.paddlepaddle.org.cn/install)")


def require_paddle():
    """A CLI that needs Paddle, started where it is missing: one line and exit status 2,
    not a traceback from the first import of paddle. Call it before importing anything
    that imports paddle."""
    import importlib.util
    try:
        found = importlib.util.find_spec("paddle") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        print(f"error: {NO_PADDLE}", file=sys.stderr)
        sys.exit(2)


# what the text papers and the text-to-image family import where they need it, and the quick start's
# requirements.txt (the main job's) leaves out: a missing one is one line saying where it comes from
OPTIONAL = {"paddlenlp": "the text papers (kim_cnn, chnsenticorp_rnn) and CLIP", "jieba": "the Chinese text papers",
            "ppdiffusers": "the text-to-image family (sd_lora, dreambooth, repro.diffusion)"}


def missing_optional(name):
    return (f"{name} is not installed: {OPTIONAL[name]} need it, and requirements.txt (the main job's) leaves it "
            f"out; install requirements-test.txt (pip install -r requirements-test.txt in the harness's checkout), "
            f"or the installed harness's extra [nlp] or [diffusion]")


def run_cli(main, argv=None):
    try:
        code = main(argv)
    except ReproError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except ModuleNotFoundError as e:
        top = (e.name or "").partition(".")[0]
        if top != "paddle" and top not in OPTIONAL:
            raise
        print(f"error: {NO_PADDLE if top == 'paddle' else missing_optional(top)}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly, as Unix tools do
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141
    sys.exit(code or 0)
