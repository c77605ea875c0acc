"""Every registered algorithm is a Method: what distill/loop.py calls exists on each class."""

from __future__ import annotations

import inspect

import pytest

from gsdd_cli.core.algorithms import ALGORITHMS, get_algorithm
from gsdd_cli.distill.method import Method


@pytest.mark.parametrize("name", [a for a in ALGORITHMS if get_algorithm(a).loop])
def test_registered_algorithm_follows_the_method_protocol(name):
    cls = get_algorithm(name).load()
    assert cls.name == name
    assert isinstance(cls.seed_per_rank, bool)
    for member in ("step", "state_dict", "load_state_dict", "header_fields"):
        assert callable(getattr(cls, member, None)), f"{cls.__name__} has no {member}()"
    params = list(inspect.signature(cls.step).parameters)
    assert params == ["self", "iteration"], params
    assert list(inspect.signature(cls.__init__).parameters) == ["self", "ctx"]


def test_protocol_names_what_the_loop_uses():
    import ast
    from pathlib import Path

    import gsdd_cli.distill.loop as loop

    tree = ast.parse(Path(loop.__file__).read_text())
    used = {n.attr for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "method"}
    declared = {m for m in dir(Method) if not m.startswith("_")} | set(Method.__annotations__)
    assert used and used <= declared, sorted(used - declared)


def test_algorithms_outside_the_loop_are_runners():
    """sre2l is not iterations over the whole set: its entry is the runner distill() hands it to."""
    others = [a for a in ALGORITHMS if not get_algorithm(a).loop]
    assert others == ["sre2l"]
    run = get_algorithm("sre2l").load()
    assert callable(run) and list(inspect.signature(run).parameters)[:2] == ["cfg", "on_step"]
