"""Entry point: parse arguments, read settings, then run the console, the engine or a command."""

from __future__ import annotations

import sys

from vertex_tui.cli import main as cli_main


def main(argv: list[str] | None = None) -> None:
    sys.exit(cli_main(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
