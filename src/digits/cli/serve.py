"""``digits serve`` (the draw-a-digit page and the JSON API), ``digits export`` (ONNX) and
``digits predict-image``. Imports are inside the commands: ``serve --runtime onnx`` must
never import torch, and ``digits --help`` must stay quick.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from digits.cli.args import HelpFormatter, count, port, seconds
from digits.serve.settings import ACCESS_LOG_FORMATS, ConnectionLimits

RUNTIMES = ("torch", "onnx")


def add_commands(sub: Any) -> None:
    """Add the serving sub-commands to ``sub`` (the main parser's ``add_subparsers()``)."""
    fmt = HelpFormatter
    serve = sub.add_parser("serve", formatter_class=fmt,
                           help="serve a run as a draw-a-digit page and a JSON API")
    serve.add_argument("run_dir", metavar="RUN_DIR")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 opens it to the network")
    serve.add_argument("--port", type=port, default=8000, metavar="N")
    serve.add_argument("--runtime", default="torch", choices=RUNTIMES,
                       help="onnx serves RUN_DIR/model.onnx without importing torch")
    serve.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                       help="also answer requests whose Host header names NAME (repeatable; '*': any). "
                            "Bound to a loopback address the server answers only to localhost, 127.0.0.1 "
                            "and [::1], which stops DNS rebinding; bound elsewhere, to any name unless "
                            "this is given")
    logs = serve.add_argument_group("access log")
    logs.add_argument("--access-log", metavar="FILE",
                      help="append one line per request to FILE ('-': stdout); reopened when logrotate "
                           "moves it")
    logs.add_argument("--access-log-format", default="json", choices=ACCESS_LOG_FORMATS,
                      help="json: one JSON object a line (time, client, method, path, query, status, "
                           "bytes, duration_ms, host, user_agent, referer); text: the Combined Log Format "
                           "of Apache and nginx")
    guard = serve.add_argument_group("slow and idle clients")
    defaults = ConnectionLimits()
    guard.add_argument("--header-timeout", type=seconds, default=defaults.header_timeout_s, metavar="S",
                       help="a request's headers must arrive within S seconds of the connection opening "
                            "or of the previous answer; else 408 and closed")
    guard.add_argument("--body-timeout", type=seconds, default=defaults.body_timeout_s, metavar="S",
                       help=f"a request's body must arrive within S seconds, plus one second for every "
                            f"{defaults.min_body_rate:,} bytes received; else 408 and closed")
    guard.add_argument("--keep-alive", type=seconds, default=defaults.keep_alive_s, metavar="S",
                       help="close an idle keep-alive connection after S seconds")
    guard.add_argument("--max-connections", type=count, default=defaults.max_connections, metavar="N",
                       help="connections open at once; past N the one waiting longest without a request "
                            "is closed to make room. Requests in progress are held to half of N (at most "
                            "64; past that 503), so a health check always finds room")
    guard.add_argument("--shutdown-timeout", type=seconds, default=defaults.shutdown_timeout_s, metavar="S",
                       help="on SIGTERM or Ctrl-C, requests in progress get S seconds to finish")

    export = sub.add_parser("export", formatter_class=fmt,
                            help="export a run's model, or its whole ensemble as one graph (ONNX)")
    export.add_argument("run_dir", metavar="RUN_DIR")
    export.add_argument("--format", default="onnx", choices=["onnx"])
    export.add_argument("--out", metavar="FILE", help="output file (default: RUN_DIR/model.onnx)")
    export.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="average five one-pixel shifts of each picture in the graph (default: as the "
                             "run recorded, like digits predict)")

    images = sub.add_parser("predict-image", formatter_class=fmt,
                            help="read the digit in PNG/JPEG files (photos, scans, drawings)")
    images.add_argument("files", nargs="+", metavar="FILE")
    images.add_argument("--run", required=True, metavar="RUN_DIR", help="the trained run to use")
    images.add_argument("--runtime", default="torch", choices=RUNTIMES)
    images.add_argument("--show", action="store_true", help="also print the 28x28 image the model saw")


def serve(args: argparse.Namespace, created: list[Path]) -> int:
    """``digits serve RUN_DIR``: uvicorn on ``--host``:``--port`` until interrupted."""
    from digits.serve.server import run_server

    connections = ConnectionLimits(header_timeout_s=args.header_timeout, body_timeout_s=args.body_timeout,
                                   keep_alive_s=args.keep_alive, max_connections=args.max_connections,
                                   shutdown_timeout_s=args.shutdown_timeout)
    run_server(args.run_dir, args.host, args.port, args.runtime, connections=connections,
               allowed_hosts=args.allowed_host, access_log=args.access_log,
               access_log_format=args.access_log_format)
    return 0


def export(args: argparse.Namespace, created: list[Path]) -> int:
    """``digits export RUN_DIR --format onnx``."""
    from digits.console import console
    from digits.serve.export import export_onnx

    path = export_onnx(args.run_dir, args.out, tta=args.tta)
    console.print(f"wrote {path}")
    return 0


def predict_image(args: argparse.Namespace, created: list[Path]) -> int:
    """``digits predict-image FILE... --run RUN_DIR``: one line per file."""
    from digits.console import console
    from digits.errors import DataError, InputError
    from digits.serve.preprocess import decode_image
    from digits.serve.reader import DigitReader

    reader = DigitReader.open(args.run, args.runtime)
    for name in args.files:
        path = Path(name)
        try:
            reading = reader.read([decode_image(path.read_bytes())])[0]
        except OSError as exc:
            raise DataError(f"{path}: cannot read it ({exc.strerror or exc})") from None
        except InputError as exc:
            raise InputError(f"{path}: {exc}", exc.status) from None
        # "4 (p=0.998)", "4 or 9? (unsure)" or "not a digit", from calibrated probabilities
        console.print(f"{path}: {reading.decision.text()}", markup=False, highlight=False)
        if args.show:
            console.print(ascii_image(reading.image))
    return 0


def ascii_image(image: Any) -> str:
    """A 28x28 uint8 image as 28 lines of text, darker characters for brighter pixels."""
    shades = " .:-=+*#%@"
    return "\n".join("".join(shades[int(v) * (len(shades) - 1) // 255] * 2 for v in row) for row in image)


COMMANDS = {"serve": serve, "export": export, "predict-image": predict_image}
