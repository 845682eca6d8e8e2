"""`python -m tools.toy build DIR` trains the toy base model; `python -m tools.toy eval` prints the DreamBooth figures."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["eval"]:
        from tools.toy.evaluation import eval_toy_main

        return eval_toy_main(args[1:])
    parser = argparse.ArgumentParser(prog="python -m tools.toy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="train the toy base model into DIR (a diffusers folder)")
    build.add_argument("dir", type=Path)
    sub.add_parser("eval", help="DreamBooth on the toy model: fidelity and class drift as JSON")
    parsed = parser.parse_args(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from tools.toy.build import build_toy_model

    timings = build_toy_model(parsed.dir, report=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(timings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
