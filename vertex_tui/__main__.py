"""Entry point: parse arguments, read settings, then run the console, the engine or a command."""

from __future__ import annotations

import signal
import sys

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


def main(argv: list[str] | None = None) -> None:
    """`vertex-tui`: exit 130, quietly, for a Ctrl-C at any point of the run.

    The command line is imported here, inside the `try`, not at module level: its imports
    (and the settings and database that follow) take most of the start, and a SIGINT there
    was a `KeyboardInterrupt` traceback. Once the run is over, SIGINT gets its default action
    back, so one during the interpreter's shutdown (threads joined, atexit) ends the process
    as an interrupt (the shell says 130), again without a traceback.
    """
    try:
        from vertex_tui.cli import main as cli_main

        code = cli_main(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(code)


if __name__ == "__main__":
    main()
