"""The one way the tests run the ``advrobust`` command in-process."""
import sys

from advrobust.cli import main


def run_cli(capsys, *argv):
    """(exit code, stdout, stderr) of `advrobust *argv` run in this process; ``sys.exit("message")``
    gives 1 with the message on stderr, as in a real run."""
    code = 0
    try:
        main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
        if isinstance(code, str):
            print(code, file=sys.stderr)
            code = 1
    out, err = capsys.readouterr()
    return code or 0, out, err
