"""What a distillation algorithm is to the run loop: the :class:`Method` protocol.

:mod:`gsdd_cli.core.algorithms` maps a name (``tm``, ``dm``, ``dc``) to a class; the loop
(:mod:`gsdd_cli.distill.loop`) builds it with the run's :class:`~gsdd_cli.distill.common.Context`
(the synthetic images, their optimizer, the transform, the real data for DM/DC, the process group)
and then only calls what is declared here. A new algorithm is one class with these members plus one
line in ``core/algorithms.py``; nothing else in the loop, the checkpoint or the CLI changes.

- ``step(iteration)``: one distillation iteration. It computes the matching loss, back-propagates
  into the synthetic images and steps ``ctx.optimizer`` (as often as the method needs) and returns
  the scalars to log (``{"loss": …}``, at least). The loop has reseeded every RNG from the
  iteration before the call, so a step is a function of (state, iteration): that is what makes
  ``--resume`` reproduce an uninterrupted run.
- ``state_dict()`` / ``load_state_dict(state)``: the method's own state beyond the images and
  their optimizer (TM: the learned lr α and its SGD state). Tensors only on the CPU; it goes into
  the checksummed checkpoint.
- ``header_fields()``: values recorded in the ``.gsd`` header (TM: ``syn_lr``, which evaluation
  then uses as the training lr).
- ``memory_plan``: the memory pre-flight's record (TM; empty for the others), written to the
  config and the log.
- ``seed_per_rank``: under torchrun, whether each rank draws its own random stream (TM: each rank
  matches its own expert segment) or all ranks share the iteration's seed (DM, DC: they split the
  classes of one shared draw).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Method(Protocol):
    name: str
    memory_plan: dict
    seed_per_rank: bool

    def step(self, iteration: int) -> dict[str, float]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def header_fields(self) -> dict: ...


class StatelessMethod:
    """Base for algorithms with no state beyond the synthetic images and their optimizer (DM, DC)."""

    memory_plan: dict = {}
    seed_per_rank = False

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state

    def header_fields(self) -> dict:
        return {}


__all__ = ["Method", "StatelessMethod"]
