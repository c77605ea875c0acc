"""Trajectory matching (TM / MTT, SPEC §5.1).

One iteration:
1. an expert uniformly at random, a start epoch t ~ U{0, …, max_start_epoch − 1}; θ_start = snapshot t,
   θ_target = snapshot t + expert_epochs;
2. a random subset of min(B, syn_steps·batch_syn) synthetic images (rendering just that subset is the
   same as rendering all B and selecting it), transformed;
3. syn_steps student steps from θ_start on mini-batches of batch_syn images of a random permutation of
   the subset (re-permuted when exhausted; the remainder chunk is a smaller batch), non-Siamese DSA,
   θ ← θ − α·∇CE(θ) with the graph kept (``torch.func.functional_call`` + ``create_graph``);
4. ℒ = ‖θ_N − θ_target‖² / ‖θ_start − θ_target‖² + λ·L_bnd, backward to the Gaussians and to α;
5. Adam step on the Gaussians, SGD(lr_lr, momentum 0.5) step on α, α ← max(α, min_syn_lr), clip.

Multi-process: every rank draws its own expert, start epoch, subset and batches (the iteration seed
includes the rank); the Gaussian gradients and α's gradient are averaged across ranks before the
steps: a batch of W trajectories per iteration.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from gsdd_cli.data.augment import dsa
from gsdd_cli.distill.common import Context, all_reduce_grads
from gsdd_cli.distill.experts import ExpertBuffers
from gsdd_cli.errors import ConfigError
from gsdd_cli.models import get_model


class TrajectoryMatching:
    name = "tm"
    seed_per_rank = True

    def __init__(self, ctx: Context):
        self.ctx = ctx
        cfg = ctx.cfg
        if not cfg.buffers:
            raise ConfigError("trajectory matching needs expert trajectories: give --buffers DIR",
                              hint=f"create them with: gsdd experts {cfg.dataset} --out buffers/")
        self.buffers = ExpertBuffers(cfg.buffers)
        self.net = get_model(cfg.model, ctx.channels, ctx.num_classes, ctx.height, ctx.width).to(ctx.device)
        self.net.train()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.names = [n for n, _ in self.net.named_parameters()]
        self.shapes = [p.shape for _, p in self.net.named_parameters()]
        self.sizes = [p.numel() for _, p in self.net.named_parameters()]
        self.buffers.check(
            dataset=cfg.dataset, model=cfg.model, transform=ctx.transform.kind,
            param_count=sum(self.sizes), needed_epoch=cfg.max_start_epoch - 1 + cfg.expert_epochs,
        )
        self.syn_lr = torch.tensor(float(cfg.lr_init), device=ctx.device, requires_grad=True)
        self.lr_optimizer = torch.optim.SGD([self.syn_lr], lr=cfg.lr_lr, momentum=0.5)

    def _unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = torch.split(flat, self.sizes)
        return {n: p.view(s) for n, p, s in zip(self.names, parts, self.shapes)}

    def step(self, iteration: int) -> dict[str, float]:
        ctx, cfg = self.ctx, self.ctx.cfg
        expert = int(torch.randint(0, len(self.buffers), (1,)).item())
        start_epoch = int(torch.randint(0, cfg.max_start_epoch, (1,)).item())
        start = self.buffers.get(expert, start_epoch).to(ctx.device)
        target = self.buffers.get(expert, start_epoch + cfg.expert_epochs).to(ctx.device)

        b = ctx.images.num_images
        batch = cfg.batch_syn if cfg.batch_syn > 0 else b
        n_sub = min(b, cfg.syn_steps * batch)
        subset = torch.randperm(b)[:n_sub].to(ctx.device)
        syn = ctx.render(subset)
        labels = ctx.images.labels.to(ctx.device)[subset]

        theta = start.clone().requires_grad_(True)
        perm, pos = torch.randperm(n_sub).to(ctx.device), 0
        for _ in range(cfg.syn_steps):
            if pos >= n_sub:
                perm, pos = torch.randperm(n_sub).to(ctx.device), 0
            idx = perm[pos : pos + batch]
            pos += batch
            x = syn[idx]
            if cfg.dsa:
                x = dsa(x, cfg.dsa_strategy, seed=-1)
            logits = functional_call(self.net, self._unflatten(theta), (x,))
            ce = F.cross_entropy(logits, labels[idx])
            (grad,) = torch.autograd.grad(ce, theta, create_graph=True)
            theta = theta - self.syn_lr * grad

        dist_target = (start - target).pow(2).sum()
        match = (theta - target).pow(2).sum() / dist_target.clamp_min(1e-12)
        loss = match + ctx.boundary()
        ctx.optimizer.zero_grad(set_to_none=True)
        self.lr_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        all_reduce_grads([self.syn_lr], ctx.dist, average=True)
        ctx.step_gaussians(average=True)
        self.lr_optimizer.step()
        with torch.no_grad():
            self.syn_lr.clamp_(min=cfg.min_syn_lr)
        return {
            "loss": float(loss.detach()),
            "match": float(match.detach()),
            "syn_lr": float(self.syn_lr.detach()),
            "expert": expert,
            "start_epoch": start_epoch,
        }

    def state_dict(self) -> dict:
        return {"syn_lr": self.syn_lr.detach().cpu().clone(), "lr_optimizer": self.lr_optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.syn_lr.copy_(state["syn_lr"].to(self.syn_lr.device))
        self.lr_optimizer.load_state_dict(state["lr_optimizer"])

    def header_fields(self) -> dict:
        return {"syn_lr": float(self.syn_lr.detach())}
