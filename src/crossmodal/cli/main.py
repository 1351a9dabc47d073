"""``crossmodal``: the entry point. Parses arguments, runs a command, reports errors.

Each command lives in its own module with ``add_parser(subparsers)`` and ``run(args) -> int``;
a command turns its arguments into typed config at once and calls the library.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from crossmodal import __version__
from crossmodal.errors import CrossmodalError

EXIT_OK = 0  # success
EXIT_ERROR = 1  # a crossmodal error: bad input, bad weights, missing dependency
EXIT_USAGE = 2  # bad command-line usage (argparse's own code)


def _commands() -> list[ModuleType]:
    from crossmodal.cli import (
        data,
        demo,
        embed,
        eval,
        export_onnx,
        models,
        moments,
        predict,
        search,
        serve,
        train,
    )

    return [demo, models, embed, search, serve, moments, data, export_onnx, eval, train, predict]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used to document the CLI)."""
    parser = argparse.ArgumentParser(
        prog="crossmodal",
        description="One joint embedding space for text and images: embed, search, train, "
        "evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"crossmodal {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in _commands():
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for launchers that re-run it
    level = logging.ERROR if args.quiet else (logging.DEBUG if args.verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.verbose == 0:
        for noisy in ("httpx", "urllib3", "faiss.loader", "milvus_lite"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # The Hub's retry warnings and transformers' config notes come before our own one-line
        # error, which says what to do (crossmodal.encoders.hub); -v shows them.
        for noisy in ("huggingface_hub", "transformers"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        code: int = args.run(args)
        return code
    except CrossmodalError as exc:
        print(f"crossmodal: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("crossmodal: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
