import pytest

from gsdd_cli.sets import budget as B
from gsdd_cli.core.errors import BudgetError

# Every (dataset, res, IPC, GPC, points) row of the paper (docs/method.md §3.2).
PAPER_ROWS = [
    ("cifar10", 32, 10, 1, 30, 22, "tm"),
    ("cifar10", 32, 10, 10, 160, 42, "tm"),
    ("cifar10", 32, 10, 50, 250, 136, "tm"),
    ("cifar100", 32, 100, 1, 30, 22, "tm"),
    ("cifar100", 32, 100, 10, 80, 85, "tm"),
    ("cifar100", 32, 100, 50, 400, 85, "tm"),
    ("imagenet-subset", 128, 10, 1, 64, 170, "tm"),
    ("imagenet-subset", 128, 10, 10, 640, 170, "tm"),
    ("imagenet-subset", 128, 10, 1, 200, 54, "dm"),
    ("imagenet-subset", 128, 10, 1, 200, 54, "dc"),
]


@pytest.mark.parametrize("name,res,classes,ipc,gpc,points,algo", PAPER_ROWS)
def test_paper_rows(name, res, classes, ipc, gpc, points, algo):
    assert B.points_per_image(ipc, gpc, 3, res, res) == points
    assert B.recommended_gpc(ipc, res, res, 3, classes, algo) == gpc
    plan = B.make_plan(ipc, res, res, 3, classes, gpc=gpc)
    assert plan.points == points and plan.used_bytes <= plan.budget_bytes
    assert plan.used_bytes == classes * gpc * points * 18
    # Asking by points gives back at least the paper's GPC.
    assert B.make_plan(ipc, res, res, 3, classes, points=points).gpc >= gpc


def test_formula_details():
    assert B.bytes_per_gaussian(3) == 18 and B.bytes_per_gaussian(1) == 14
    assert B.budget_bytes_per_class(10, 3, 32, 32) == 122_880
    plan = B.make_plan(10, 32, 32, gpc=160)
    assert plan.utilisation == pytest.approx(120_960 / 122_880)


def test_impossible_requests():
    with pytest.raises(BudgetError, match="largest GPC is"):
        B.make_plan(1, 8, 8, channels=1, gpc=10_000)
    with pytest.raises(BudgetError):
        B.make_plan(1, 8, 8, channels=1, points=10_000)
    for bad in (dict(ipc=0), dict(ipc=-1)):
        with pytest.raises(BudgetError):
            B.make_plan(height=32, width=32, gpc=1, **bad)
    with pytest.raises(BudgetError):
        B.make_plan(1, 32, 32, gpc=0)
    with pytest.raises(BudgetError, match="exactly one"):
        B.make_plan(1, 32, 32, gpc=1, points=1)


def test_heuristic_for_unknown_settings():
    gpc = B.recommended_gpc(1, 16, 16, channels=1, classes=10)
    assert gpc >= 1 and B.points_per_image(1, gpc, 1, 16, 16) >= B.MIN_RECOMMENDED_POINTS
    assert all(p.points >= 1 for p in B.options(1, 16, 16, 1, 10))
