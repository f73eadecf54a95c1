"""Task functions for the pool tests, module-level so they pickle under spawn and forkserver."""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

OnPosition = Callable[[int], None]

_init_calls = 0
_marker: object = None


def echo(payload: Any, on_position: OnPosition) -> Any:
    return payload


def getpid(payload: Any, on_position: OnPosition) -> int:
    return os.getpid()


def square_items(payload: Sequence[int], on_position: OnPosition) -> list[int]:
    out = []
    for i, x in enumerate(payload):
        on_position(i)
        out.append(x * x)
    return out


def raise_value_error(payload: Any, on_position: OnPosition) -> None:
    raise ValueError(f"bad payload {payload!r}")


def exit_with(code: int, on_position: OnPosition) -> None:
    os._exit(code)


def segfault(payload: Any, on_position: OnPosition) -> None:
    ctypes.string_at(0)


def sleep_items(payload: Sequence[float], on_position: OnPosition) -> int:
    """Sleep ``payload[i]`` seconds for item ``i``; returns the item count."""
    for i, seconds in enumerate(payload):
        on_position(i)
        time.sleep(seconds)
    return len(payload)


def sleep_unreported(seconds: float, on_position: OnPosition) -> None:
    time.sleep(seconds)


def kill_self_at(payload: tuple[int, int], on_position: OnPosition) -> None:
    """Run ``payload[0]`` items and SIGKILL this process at item ``payload[1]``."""
    items, fatal = payload
    for i in range(items):
        on_position(i)
        if i == fatal:
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(10)


def reply_then_exit(payload: Any, on_position: OnPosition) -> str:
    """Return normally, then end the process shortly after the reply has been sent."""

    def later() -> None:
        time.sleep(0.1)
        os._exit(5)

    threading.Thread(target=later, daemon=True).start()
    return "replied"


def unpicklable_result(payload: Any, on_position: OnPosition) -> Any:
    return lambda: None


def big_table(rows: int, on_position: OnPosition) -> pa.Table:
    import numpy as np
    import pyarrow as pa

    return pa.table({"x": np.arange(rows, dtype=np.int64), "y": np.ones(rows)})


def big_array(size: int, on_position: OnPosition) -> np.ndarray:
    import numpy as np

    return np.arange(size, dtype=np.float64)


def record_init(marker: object) -> None:
    global _init_calls, _marker
    _init_calls += 1
    _marker = marker


def failing_init() -> None:
    raise ValueError("the initializer is broken")


def read_init(payload: Any, on_position: OnPosition) -> tuple[int, object]:
    return _init_calls, _marker
