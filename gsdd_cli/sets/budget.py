"""Storage-budget arithmetic (docs/method.md §3). Pure functions, no torch.

The budget of IPC real images per class is counted in bytes of fp32 pixels: IPC·C·H·W·4 bytes per
class. One Gaussian costs (6 + C) parameters × 2 bytes (bf16): 2 for the mean, 3 for the Cholesky
factor, C for the colour and 1 for the opacity (18 bytes for RGB). GPC Gaussian images per class
share the class budget equally, so ``points = floor(budget / (GPC · (6 + C) · 2))``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from gsdd_cli.core.errors import BudgetError

BYTES_PER_PARAM = 2  # bf16
BYTES_PER_PIXEL_VALUE = 4  # fp32 pixels define the budget
MAX_GPC_FACTOR = 32  # recommendations consider GPC up to 32 × IPC
MIN_RECOMMENDED_POINTS = 16

# The paper's (GPC) choices, keyed by (resolution, channels, classes, IPC, algorithm family).
# Every row reproduces the paper's points per image through points_per_image() (tests check it).
PAPER_GPC: dict[tuple[int, int, int, int, str], int] = {
    (32, 3, 10, 1, "tm"): 30,
    (32, 3, 10, 10, "tm"): 160,
    (32, 3, 10, 50, "tm"): 250,
    (32, 3, 100, 1, "tm"): 30,
    (32, 3, 100, 10, "tm"): 80,
    (32, 3, 100, 50, "tm"): 400,
    (128, 3, 10, 1, "tm"): 64,
    (128, 3, 10, 10, "tm"): 640,
    (128, 3, 10, 1, "dm"): 200,
    (128, 3, 10, 1, "dc"): 200,
}


def params_per_gaussian(channels: int) -> int:
    return 6 + channels


def bytes_per_gaussian(channels: int) -> int:
    return params_per_gaussian(channels) * BYTES_PER_PARAM


def budget_bytes_per_class(ipc: int, channels: int, height: int, width: int) -> int:
    return ipc * channels * height * width * BYTES_PER_PIXEL_VALUE


def _check_positive(**values: int | None) -> None:
    for name, v in values.items():
        if v is not None and (not isinstance(v, int) or v < 1):
            raise BudgetError(f"--{name.replace('_', '-')} must be a positive integer (got {v})")


def points_per_image(ipc: int, gpc: int, channels: int, height: int, width: int) -> int:
    """Gaussians per image when GPC images per class share the budget of IPC real images."""
    _check_positive(ipc=ipc, gpc=gpc, channels=channels, height=height, width=width)
    return budget_bytes_per_class(ipc, channels, height, width) // (gpc * bytes_per_gaussian(channels))


def max_gpc(ipc: int, points: int, channels: int, height: int, width: int) -> int:
    """Largest GPC whose images can each hold ``points`` Gaussians."""
    _check_positive(ipc=ipc, points=points, channels=channels, height=height, width=width)
    return budget_bytes_per_class(ipc, channels, height, width) // (points * bytes_per_gaussian(channels))


@dataclass(frozen=True)
class Plan:
    """One way to spend the budget: GPC images per class of ``points`` Gaussians each."""

    ipc: int
    gpc: int
    points: int
    channels: int
    height: int
    width: int
    classes: int

    @property
    def num_images(self) -> int:
        return self.gpc * self.classes

    @property
    def bytes_per_class(self) -> int:
        return self.gpc * self.points * bytes_per_gaussian(self.channels)

    @property
    def budget_per_class(self) -> int:
        return budget_bytes_per_class(self.ipc, self.channels, self.height, self.width)

    @property
    def used_bytes(self) -> int:
        return self.bytes_per_class * self.classes

    @property
    def budget_bytes(self) -> int:
        return self.budget_per_class * self.classes

    @property
    def utilisation(self) -> float:
        return self.used_bytes / self.budget_bytes

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(
            num_images=self.num_images,
            bytes_per_class=self.bytes_per_class,
            budget_per_class=self.budget_per_class,
            used_bytes=self.used_bytes,
            budget_bytes=self.budget_bytes,
            utilisation=round(self.utilisation, 6),
        )
        return d


def make_plan(
    ipc: int,
    height: int,
    width: int,
    channels: int = 3,
    classes: int = 10,
    gpc: int | None = None,
    points: int | None = None,
) -> Plan:
    """A plan from exactly one of ``gpc`` / ``points``; raises BudgetError if nothing fits."""
    _check_positive(ipc=ipc, height=height, width=width, channels=channels, classes=classes)
    _check_positive(gpc=gpc, points=points)
    if (gpc is None) == (points is None):
        raise BudgetError("give exactly one of GPC or points per image")
    if gpc is not None:
        pts = points_per_image(ipc, gpc, channels, height, width)
        if pts < 1:
            most = max_gpc(ipc, 1, channels, height, width)
            raise BudgetError(
                f"GPC {gpc} leaves less than one Gaussian per image "
                f"(budget {budget_bytes_per_class(ipc, channels, height, width)} bytes per class, "
                f"{bytes_per_gaussian(channels)} bytes per Gaussian); the largest GPC is {most}"
            )
        return Plan(ipc, gpc, pts, channels, height, width, classes)
    assert points is not None
    g = max_gpc(ipc, points, channels, height, width)
    if g < 1:
        most = points_per_image(ipc, 1, channels, height, width)
        raise BudgetError(
            f"{points} Gaussians per image do not fit even one image per class; "
            f"at most {most} points per image fit with GPC 1"
        )
    return Plan(ipc, g, points, channels, height, width, classes)


def recommended_gpc(
    ipc: int, height: int, width: int, channels: int = 3, classes: int = 10, algorithm: str = "tm"
) -> int:
    """The paper's GPC where it has one, else the largest GPC = k·IPC (k ≤ 32) keeping ≥ 16 points.

    TM settings are used for DM/DC where the paper gives none (it only reports DM/DC at 128 px IPC 1).
    """
    _check_positive(ipc=ipc, height=height, width=width, channels=channels, classes=classes)
    square = height if height == width else None
    for algo in (algorithm, "tm"):
        key = (square or -1, channels, classes, ipc, algo)
        if key in PAPER_GPC:
            return PAPER_GPC[key]
    best = None
    for k in range(1, MAX_GPC_FACTOR + 1):
        if points_per_image(ipc, k * ipc, channels, height, width) >= MIN_RECOMMENDED_POINTS:
            best = k * ipc
    if best is None:
        best = max_gpc(ipc, 1, channels, height, width)
        if best < 1:
            raise BudgetError(
                f"not even one Gaussian per image fits in IPC {ipc} at {channels}×{height}×{width}"
            )
        best = min(best, ipc)
    return best


def options(
    ipc: int, height: int, width: int, channels: int = 3, classes: int = 10
) -> list[Plan]:
    """A few alternative plans (GPC = IPC × 1, 2, 4, 8, 16, 32) that hold at least one point."""
    plans = []
    for k in (1, 2, 4, 8, 16, 32):
        gpc = k * ipc
        if points_per_image(ipc, gpc, channels, height, width) >= 1:
            plans.append(make_plan(ipc, height, width, channels, classes, gpc=gpc))
    return plans


def is_paper_setting(
    ipc: int, height: int, width: int, channels: int, classes: int, algorithm: str = "tm"
) -> bool:
    return height == width and (
        (height, channels, classes, ipc, algorithm) in PAPER_GPC
        or (height, channels, classes, ipc, "tm") in PAPER_GPC
    )


def plans_for(ipc: int, height: int, width: int, channels: int, classes: int, *, gpc: int | None = None,
              points: int | None = None, algorithm: str = "tm") -> tuple[Plan, str, list[Plan]]:
    """(chosen plan, where it comes from, plans to show): `gsdd budget`'s answer.

    With neither ``gpc`` nor ``points`` the chosen plan is the paper's (or the heuristic's) GPC and
    the alternatives follow it; with one of them it is the plan that this choice implies.
    """
    if gpc is not None and points is not None:
        raise BudgetError("give at most one of --gpc and --points")
    if gpc is None and points is None:
        chosen = make_plan(ipc, height, width, channels, classes,
                           gpc=recommended_gpc(ipc, height, width, channels, classes, algorithm))
        source = "paper" if is_paper_setting(ipc, height, width, channels, classes, algorithm) else "heuristic"
        others = [p for p in options(ipc, height, width, channels, classes) if p.gpc != chosen.gpc]
        return chosen, source, [chosen, *others]
    chosen = make_plan(ipc, height, width, channels, classes, gpc=gpc, points=points)
    return chosen, "requested", [chosen]


