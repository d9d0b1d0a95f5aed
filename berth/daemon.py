"""The one place a berth daemon turns into a process exit status.

berth-controller and berth-agent call ``run_daemon`` from their ``main``: it sets
up logging, runs the daemon's coroutine, and maps berth's errors to exit codes
(1: the operator's input, 2: anything else berth raised on purpose, 130: Ctrl-C),
each with one line on stderr.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from berth.errors import BerthError, UserError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def run_daemon(prog: str, level: str, start: Callable[[], Coroutine[Any, Any, None]]) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)
    try:
        asyncio.run(start())
    except UserError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        sys.exit(1)
    except BerthError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
