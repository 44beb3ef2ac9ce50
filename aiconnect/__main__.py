# -*- test-case-name: tests.integration.test_startup -*-
"""
C{python -m aiconnect}: the commands that are not the server.

    - C{python -m aiconnect check FILE}: validate a configuration file as
      start-up would, binding nothing (the same check as
      C{twistd aiconnect --check-config FILE}); prints C{FILE: OK} and
      exits 0, or the error on one line and exits 1.
    - C{python -m aiconnect version}: the version.

The server itself runs under twistd: C{twistd -n aiconnect --config FILE}.
"""

from __future__ import annotations

import argparse
import sys

from aiconnect import __version__


def main(argv: list[str] | None = None) -> int:
    """
    Run one command.

    @param argv: The arguments after the program name (C{sys.argv[1:]} by
        default).
    @return: The exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m aiconnect", description="AI Connect tools (the server runs as: twistd -n aiconnect --config FILE)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a configuration file as start-up would, binding nothing")
    check.add_argument("file", nargs="+", help="the TOML configuration file(s)")
    commands.add_parser("version", help="print the version")
    args = parser.parse_args(argv)
    if args.command == "version":
        print(__version__)
        return 0
    from aiconnect.tap import check_config

    status = 0
    for path in args.file:
        ok, line = check_config(path)
        print(line, file=sys.stdout if ok else sys.stderr)
        status = status or (0 if ok else 1)
    return status


if __name__ == "__main__":
    sys.exit(main())
