"""Gradient matching (DC, docs/method.md §5.3).

One iteration: a freshly initialised network (trainable) and SGD(lr_net) for its inner updates. For each
of ``outer_loop`` outer steps: render all B images once; for every class c, the gradient of the CE loss
w.r.t. the network weights on a real batch (detached) and on class c's synthetic images (with
create_graph), both with the same Siamese DSA seed; ℒ = Σ_c [D(g_syn, g_real) + λ·L_bnd] (the boundary
term is therefore counted K times, as in the reference code, docs/method.md §9.8); one Adam step; then, unless
it was the last outer step, ``inner_loop`` epochs of training the network on the (detached, re-rendered)
synthetic set, batch ``batch_train``, non-Siamese DSA.

D is DC's layer-wise distance: for every weight with ≥ 2 dims, reshaped to [out, rest],
Σ_rows (1 − cos(g_syn,row, g_real,row)) with 1e-6 added to the norm product; 1-D tensors contribute 0.

Multi-process: rank r handles classes r, r+W, …; the per-rank sums are all-reduced (summed) before
the single Adam step, which reproduces the one-process objective; the networks are identical on
every rank (they are drawn from the iteration seed, not the rank).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gsdd_cli.data.augment import dsa
from gsdd_cli.distill.common import Context, derive_seed, draw_seed
from gsdd_cli.distill.method import StatelessMethod
from gsdd_cli.models import get_model


def match_distance(g_syn: list[torch.Tensor], g_real: list[torch.Tensor]) -> torch.Tensor:
    """DC's layer-wise cosine distance summed over output rows of every ≥2-D parameter."""
    total = g_syn[0].new_zeros(())
    for gs, gr in zip(g_syn, g_real):
        if gs.dim() < 2:
            continue
        gs = gs.reshape(gs.shape[0], -1)
        gr = gr.reshape(gr.shape[0], -1)
        cos = (gs * gr).sum(-1) / (gs.norm(dim=-1) * gr.norm(dim=-1) + 1e-6)
        total = total + (1.0 - cos).sum()
    return total


class GradientMatching(StatelessMethod):
    name = "dc"

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def step(self, iteration: int) -> dict[str, float]:
        ctx, cfg = self.ctx, self.ctx.cfg
        net = get_model(cfg.model, ctx.channels, ctx.num_classes, ctx.height, ctx.width).to(ctx.device)
        net.train()
        params = [p for p in net.parameters() if p.requires_grad]
        net_opt = torch.optim.SGD(params, lr=cfg.lr_net)
        outer = cfg.outer_loop or 1
        inner = cfg.inner_loop or 0
        mine = list(range(ctx.dist.rank, ctx.num_classes, ctx.dist.world))
        total = 0.0
        for ol in range(outer):
            syn_all = ctx.render()
            ctx.optimizer.zero_grad(set_to_none=True)
            loss = syn_all.new_zeros(())
            for c in range(ctx.num_classes):
                seed = draw_seed()  # drawn for every class on every rank: RNG streams stay aligned
                if c not in mine:
                    continue
                real = ctx.real_batch(c, cfg.batch_real)
                syn = syn_all[ctx.class_images(c)]
                if cfg.dsa:
                    real = dsa(real, cfg.dsa_strategy, seed=seed)
                    syn = dsa(syn, cfg.dsa_strategy, seed=seed)
                y_real = torch.full((real.shape[0],), c, device=ctx.device, dtype=torch.long)
                y_syn = torch.full((syn.shape[0],), c, device=ctx.device, dtype=torch.long)
                g_real = torch.autograd.grad(F.cross_entropy(net(real), y_real), params)
                g_real = [g.detach() for g in g_real]
                g_syn = torch.autograd.grad(F.cross_entropy(net(syn), y_syn), params, create_graph=True)
                loss = loss + match_distance(g_syn, g_real) + ctx.boundary()
            if mine:
                loss.backward()
            total += float(loss.detach())
            ctx.step_images(average=False)
            if ol == outer - 1:
                break
            with torch.no_grad():
                syn_train = ctx.render().detach()
            # the inner loop's draws must not depend on which classes this rank handled
            torch.manual_seed(derive_seed(cfg.seed, iteration, ol, "inner"))
            labels = ctx.images.labels.to(ctx.device)
            for _ in range(inner):
                perm = torch.randperm(syn_train.shape[0], device="cpu").to(ctx.device)
                for s in range(0, syn_train.shape[0], cfg.batch_train):
                    idx = perm[s : s + cfg.batch_train]
                    x = syn_train[idx]
                    if cfg.dsa:
                        x = dsa(x, cfg.dsa_strategy, seed=-1)
                    net_opt.zero_grad(set_to_none=True)
                    F.cross_entropy(net(x), labels[idx]).backward()
                    net_opt.step()
        return {"loss": total / (outer * ctx.num_classes)}
