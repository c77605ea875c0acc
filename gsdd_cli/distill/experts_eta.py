"""The time estimate `gsdd experts` prints after its first timed epoch, and the flags that shorten it."""

from __future__ import annotations

import torch

from gsdd_cli.core.options import flag_names
from gsdd_cli.distill.experts_config import ExpertsConfig

LONG_RUN = 30 * 60  # seconds: a longer estimate names the options that shorten it


def format_duration(seconds: float) -> str:
    """'45 s', '12 min', '3 h 10 min', '2 d 4 h'."""
    s = int(round(seconds))
    if s < 90:
        return f"{s} s"
    m = s // 60
    if m < 90:
        return f"{m} min"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m} min"
    d, h = divmod(h, 24)
    return f"{d} d {h} h"


def shorten_flags(model: type, num: str, epochs: str) -> tuple[str, str]:
    """The flags of ``model``'s fields for the number of experts and their epochs (for the hint)."""
    return flag_names(num, model.model_fields[num])[0], flag_names(epochs, model.model_fields[epochs])[0]


def time_estimate(first_epoch: float, experts: int, epochs: int, device: torch.device,
                  shorten: tuple[str, str] | None = None, at_once: int = 1) -> str:
    """The line printed after the first measured epoch: how long all of this process's experts take
    at that pace, and, past :data:`LONG_RUN` seconds, the options that shorten it (``shorten``: the
    command's flags for the number of experts and their epochs). ``at_once``: experts trained
    together in that epoch (the rest take as many epochs per group of that size)."""
    shorten = shorten or shorten_flags(ExpertsConfig, "num", "epochs")
    total = first_epoch * -(-experts // at_once) * epochs
    what = "the first epoch" if at_once == 1 else f"the first epoch of {at_once} experts at once"
    line = (f"experts: {what} took {first_epoch:.2f} s on {device.type}; {experts} expert(s) × "
            f"{epochs} epochs will take about {format_duration(total)}")
    if total > LONG_RUN:
        ways = [f"fewer experts ({shorten[0]})", f"fewer epochs ({shorten[1]})"]
        if device.type == "cpu":
            ways.append("a GPU (--device cuda)")
        line += "; to shorten it: " + ", ".join(ways)
    return line


__all__ = ["LONG_RUN", "format_duration", "shorten_flags", "time_estimate"]
