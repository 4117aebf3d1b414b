"""Loaded by every interpreter started with this directory on PYTHONPATH (tests/test_crash_vanilla
.py's workers): SIGKILLs the process as a function of examples/automation/bank_api.py is entered
("<function>:before", its effect not yet made) or returns ("<function>:after", its effect made,
the step not yet checkpointed), at each point named in VANILLA_CRASH_AT that has no mark yet in
VANILLA_CRASH_MARKS. A profile hook, so the example runs exactly as written."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

POINTS = set(filter(None, os.environ.get("VANILLA_CRASH_AT", "").split(",")))
MARKS = Path(os.environ.get("VANILLA_CRASH_MARKS", "."))


def _crash_point(frame: FrameType, event: str, arg: Any) -> None:
    if event not in ("call", "return") or frame.f_globals.get("__name__") != "bank_api":
        return
    point = f"{frame.f_code.co_name}:{'before' if event == 'call' else 'after'}"
    mark = MARKS / point
    if point not in POINTS or mark.exists():
        return
    mark.write_text(str(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)


if POINTS:
    sys.setprofile(_crash_point)
    threading.setprofile(_crash_point)  # sync workflows and step bodies run in threads
