"""Distribution matching (DM, docs/method.md §5.2).

One iteration: a freshly initialised network (train mode, frozen); then for each class c in turn one
Adam step on ℒ_c = ‖mean e(real_c) − mean e(syn_c)‖² + λ·L_bnd with Siamese DSA (one seed shared by the
real and the synthetic batch). So an iteration is K optimizer steps.

Only class c's images are rendered for its step (``images.render(idx)``): rendering all B images
and selecting class c's gives the same values and the same (zero elsewhere) gradients, at 1/K the cost.

Multi-process: classes are dealt out round-robin; in round j rank r takes class j·W + r, the ranks'
gradients are summed and one Adam step is taken per round (K/W steps per iteration instead of K).

Pixel sets (``--param pixel``) follow the DM reference code instead: the class losses are summed and
one SGD step is taken per iteration (each class's images get gradient only from their own class, so
this differs from K steps only through the optimizer's momentum).
"""

from __future__ import annotations

import torch

from gsdd_cli.data.augment import dsa
from gsdd_cli.distill.common import Context, draw_seed
from gsdd_cli.distill.method import StatelessMethod
from gsdd_cli.models import get_model


class DistributionMatching(StatelessMethod):
    name = "dm"

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def _network(self) -> torch.nn.Module:
        c = self.ctx
        net = get_model(c.cfg.model, c.channels, c.num_classes, c.height, c.width).to(c.device)
        net.train()
        for p in net.parameters():
            p.requires_grad_(False)
        return net

    def step(self, iteration: int) -> dict[str, float]:
        ctx, cfg = self.ctx, self.ctx.cfg
        net = self._network()
        world, rank = ctx.dist.world, ctx.dist.rank
        rounds = -(-ctx.num_classes // world)
        total = 0.0
        matched = 0.0
        joint = cfg.param == "pixel"  # one step on the summed class losses (DM reference code)
        ctx.optimizer.zero_grad(set_to_none=True)
        for j in range(rounds):
            cls = j * world + rank
            if not joint:
                ctx.optimizer.zero_grad(set_to_none=True)
            seed = draw_seed()  # drawn on every rank so the RNG streams stay aligned
            if cls < ctx.num_classes:
                real = ctx.real_batch(cls, cfg.batch_real)
                syn = ctx.render(ctx.class_images(cls))
                if cfg.dsa:
                    real = dsa(real, cfg.dsa_strategy, seed=seed)
                    syn = dsa(syn, cfg.dsa_strategy, seed=seed)
                with torch.no_grad():
                    mu_real = net.embed(real).mean(0)
                mu_syn = net.embed(syn).mean(0)
                match = (mu_real - mu_syn).pow(2).sum()
                loss = match + ctx.boundary()
                loss.backward()
                total += float(loss.detach())
                matched += float(match.detach())
            if not joint:
                ctx.step_images(average=False)
        if joint:
            ctx.step_images(average=False)
        return {"loss": total / ctx.num_classes, "match": matched / ctx.num_classes}
