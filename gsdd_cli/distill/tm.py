"""Trajectory matching (TM / MTT, docs/method.md §5.1) with three ways to pay for the unroll's memory.

One iteration:
1. an expert uniformly at random, a start epoch t ~ U{0, …, max_start_epoch − 1}; θ_start = snapshot t,
   θ_target = snapshot t + expert_epochs;
2. a random subset of min(B, syn_steps·batch_syn) synthetic images (rendering just that subset is the
   same as rendering all B and selecting it), in network space;
3. syn_steps student steps θ_{k+1} = θ_k − α·g_k, g_k = ∇_θ CE(θ_k; DSA(x_k)), on mini-batches x_k of
   batch_syn images of a random permutation of the subset (re-permuted when exhausted; the remainder
   chunk is a smaller batch), non-Siamese DSA;
4. ℒ = ‖θ_N − θ_target‖² / ‖θ_start − θ_target‖² + λ·L_bnd, gradients to the images and to α;
5. optimizer step on the images (Gaussians: Adam; pixels: SGD), SGD(lr_lr, momentum 0.5) step on α,
   α ← max(α, min_syn_lr), projection.

``--tm-memory`` chooses how step 4 differentiates through step 3 (all three draw the same random
numbers, so they see the same batches and augmentations):

- ``full``: the unroll is one autograd graph (``create_graph``); memory grows linearly with
  syn_steps (N graphs of one step each).
- ``checkpoint``: the forward keeps only θ_0 … θ_N (4P bytes each) and the RNG state before each
  step; the backward walks k = N−1 … 0, recomputes step k's graph from θ_k and replays its DSA draws,
  and propagates the adjoint λ_k = λ_{k+1} − α·H_k λ_{k+1} (H_k = ∂g_k/∂θ_k), accumulating
  −α·(∂g_k/∂x)ᵀλ_{k+1} into the images and −g_k·λ_{k+1} into α. Exact: the same gradient as
  ``full`` up to float rounding, one step's graph in memory at a time.
- ``tesla`` (Cui et al., ICML 2023): the same recomputation, but the adjoint is not propagated:
  λ_k = λ_N = ∂ℒ/∂θ_N for every k. It therefore drops, for each batch x_i, every term that reaches
  θ_N through a later step's dependence on the parameters, i.e. the products
  −α·H_j·∂θ_j/∂x_i (j > i), and for α the terms −α·H_j·∂θ_j/∂α; what remains is
  Σ_i −α·(∂g_i/∂x_i)ᵀ λ_N and −Σ_i g_iᵀλ_N. With syn_steps = 1 nothing is dropped (equal to
  ``full``). Memory and time as ``checkpoint`` minus the Hessian-vector product per step.
- ``auto`` (default): ``full`` when the pre-flight estimate fits the available memory (fastest,
  exact), else ``checkpoint`` (exact, about one more forward/backward per step). ``tesla`` is never
  chosen automatically because its gradient is an approximation.

Multi-process: every rank draws its own expert, start epoch, subset and batches (the iteration seed
includes the rank); the image gradients and α's gradient are averaged across ranks before the steps:
a batch of W trajectories per iteration.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call

from gsdd_cli.data.augment import dsa, parse_strategy
from gsdd_cli.distill.common import Context, all_reduce_grads
from gsdd_cli.distill.experts import ExpertBuffers
from gsdd_cli.distill.memory import (
    MODES,
    USABLE_FRACTION,
    available_memory,
    estimates,
    fmt_bytes,
    largest_batch,
    linear_fit,
    saved_bytes,
)
from gsdd_cli.core.errors import ConfigError
from gsdd_cli.models import get_model


@dataclass
class _Record:
    """What the constant-memory backward needs to recompute one student step."""

    theta: torch.Tensor  # θ_k (detached)
    idx: torch.Tensor  # the step's images within the rendered subset
    rng: tuple  # global RNG state before the step's DSA draws


def _rng_snapshot(device: torch.device) -> tuple:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _rng_restore(state: tuple, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


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
        self.memory_plan: dict = {}

    # ------------------------------------------------------------------------------- geometry
    def _sizes(self, batch_syn: int | None = None) -> tuple[int, int]:
        """(images per student step, images in the rendered subset)."""
        cfg, b = self.ctx.cfg, self.ctx.images.num_images
        bs = cfg.batch_syn if batch_syn is None else batch_syn
        batch = bs if bs > 0 else b
        subset = min(b, cfg.syn_steps * batch)
        return min(batch, subset), subset

    def _unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = torch.split(flat, self.sizes)
        return {n: p.view(s) for n, p, s in zip(self.names, parts, self.shapes)}

    def _student_step(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                      create_graph: bool) -> torch.Tensor:
        """g = ∇_θ CE(θ; x) (DSA already applied to x)."""
        logits = functional_call(self.net, self._unflatten(theta), (x,))
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, y), theta, create_graph=create_graph)
        return grad

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.ctx.cfg
        return dsa(x, cfg.dsa_strategy, seed=-1) if cfg.dsa else x

    # ---------------------------------------------------------------------------- one iteration
    def step(self, iteration: int) -> dict[str, float]:
        ctx, cfg = self.ctx, self.ctx.cfg
        expert = int(torch.randint(0, len(self.buffers), (1,)).item())
        start_epoch = int(torch.randint(0, cfg.max_start_epoch, (1,)).item())
        start = self.buffers.get(expert, start_epoch).to(ctx.device)
        target = self.buffers.get(expert, start_epoch + cfg.expert_epochs).to(ctx.device)

        batch, n_sub = self._sizes()
        subset = torch.randperm(ctx.images.num_images)[:n_sub].to(ctx.device)
        syn = ctx.render(subset)
        labels = ctx.images.labels.to(ctx.device)[subset]
        dist_target = (start - target).pow(2).sum().clamp_min(1e-12)

        ctx.optimizer.zero_grad(set_to_none=True)
        self.lr_optimizer.zero_grad(set_to_none=True)
        if cfg.tm_memory in ("full", "auto"):
            theta = self._unroll_full(syn, labels, start, batch, n_sub)
            match = (theta - target).pow(2).sum() / dist_target
            loss = match + ctx.boundary()
            loss.backward()
        else:
            match = self._unroll_recompute(syn, labels, start, target, dist_target, batch, n_sub,
                                           propagate=cfg.tm_memory == "checkpoint")
            bnd = ctx.boundary()
            if bnd.requires_grad:
                bnd.backward()
            loss = match + bnd.detach()
        all_reduce_grads([self.syn_lr], ctx.dist, average=True)
        ctx.step_images(average=True)
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

    def _batches(self, n_sub: int, batch: int):
        """The index batches of the syn_steps student steps (draws exactly as the reference loop)."""
        device = self.ctx.device
        perm, pos = torch.randperm(n_sub).to(device), 0
        for _ in range(self.ctx.cfg.syn_steps):
            if pos >= n_sub:
                perm, pos = torch.randperm(n_sub).to(device), 0
            yield perm[pos : pos + batch]
            pos += batch

    def _unroll_full(self, syn, labels, start, batch, n_sub) -> torch.Tensor:
        theta = start.clone().requires_grad_(True)
        for idx in self._batches(n_sub, batch):
            grad = self._student_step(theta, self._augment(syn[idx]), labels[idx], create_graph=True)
            theta = theta - self.syn_lr * grad
        return theta

    def _unroll_recompute(self, syn, labels, start, target, dist_target, batch, n_sub, *, propagate: bool):
        """checkpoint (propagate=True) or tesla (False): see the module docstring. Sets the image and
        α gradients and returns the (detached) matching loss."""
        device = self.ctx.device
        alpha = self.syn_lr.detach()
        records: list[_Record] = []
        theta = start.clone()
        syn_values = syn.detach()
        for idx in self._batches(n_sub, batch):
            rng = _rng_snapshot(device)
            x = self._augment(syn_values[idx])
            with torch.enable_grad():
                th = theta.detach().requires_grad_(True)
                grad = self._student_step(th, x, labels[idx], create_graph=False)
            records.append(_Record(theta, idx, rng))
            theta = theta - alpha * grad
        diff = theta - target
        match = diff.pow(2).sum() / dist_target
        lam = 2.0 * diff / dist_target  # ∂ℒ/∂θ_N
        syn_leaf = syn_values.clone().requires_grad_(True)
        g_alpha = torch.zeros((), device=device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], enabled=True):
            for rec in reversed(records):
                _rng_restore(rec.rng, device)
                th = rec.theta.detach().requires_grad_(True)
                x = self._augment(syn_leaf[rec.idx])
                g = self._student_step(th, x, labels[rec.idx], create_graph=True)
                g_alpha = g_alpha - (g.detach() * lam).sum()
                inputs = [syn_leaf, th] if propagate else [syn_leaf]
                grads = torch.autograd.grad(g, inputs, grad_outputs=-alpha * lam)
                if propagate:
                    lam = lam + grads[1]
                if syn_leaf.grad is None:
                    syn_leaf.grad = grads[0]
                else:
                    syn_leaf.grad += grads[0]
                del g, grads, x, th
        if syn.requires_grad and syn_leaf.grad is not None:
            syn.backward(syn_leaf.grad)
        self.syn_lr.grad = g_alpha.reshape(self.syn_lr.shape)
        return match

    # ------------------------------------------------------------------------------- pre-flight
    def _probe(self) -> dict:
        """Measured graph sizes of one student step and of the render (see memory.py)."""
        ctx, cfg = self.ctx, self.ctx.cfg
        theta0 = self.buffers.get(0, 0).to(ctx.device)
        b = ctx.images.num_images
        idx = torch.arange(min(2, b), device=ctx.device)
        groups = parse_strategy(cfg.dsa_strategy) if cfg.dsa else []
        with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
            render_fixed, render_per = linear_fit(
                lambda n: saved_bytes(lambda: ctx.images.network_images(idx[:n], ctx.transform,
                                                                         cfg.backend))[0], 1, len(idx))
            probe = ctx.images.network_images(idx[:1], ctx.transform, cfg.backend).detach()

            def batch(n: int) -> torch.Tensor:
                return probe.expand(n, *probe.shape[1:]).clone().requires_grad_(True)

            def step_bytes(n: int) -> int:
                x = batch(n)
                y = torch.zeros(n, dtype=torch.long, device=ctx.device)
                alpha = self.syn_lr.detach().clone().requires_grad_(True)

                def run():
                    th = theta0.clone().requires_grad_(True)
                    return th - alpha * self._student_step(th, x, y, create_graph=True)

                used, out = saved_bytes(run)
                return used + out.numel() * out.element_size()

            def dsa_bytes(n: int, group: str) -> int:  # the largest augmentation op group, added to a step
                x = batch(n)
                used, out = saved_bytes(lambda: dsa(x, group, seed=-1))
                return used + out.numel() * out.element_size()

            step_fixed, step_per = linear_fit(step_bytes, 2, 4)
            aug = [linear_fit(lambda n, gr=gr: dsa_bytes(n, gr), 2, 4) for gr in groups] or [(0.0, 0.0)]
        step_fixed += max(a[0] for a in aug)
        step_per += max(a[1] for a in aug)
        return {"step_fixed": step_fixed, "step_per_image": step_per, "render_fixed": render_fixed,
                "render_per_image": render_per}

    def estimate(self, batch_syn: int | None = None, probe: dict | None = None) -> dict:
        """Estimated extra peak bytes per mode for this run (or for another ``batch_syn``)."""
        ctx = self.ctx
        probe = probe or self._probe()
        batch, subset = self._sizes(batch_syn)
        return estimates(steps=ctx.cfg.syn_steps, batch=batch, subset=subset, device_type=ctx.device.type,
                         image_bytes=ctx.channels * ctx.height * ctx.width * 4, params=sum(self.sizes), **probe)

    def plan_memory(self, notify=None):
        """Pre-flight: estimate each mode's peak, compare it with what the device has, resolve
        ``auto``; raise a one-line ConfigError when the chosen mode cannot fit. Sets ``memory_plan``
        and returns the config with the resolved ``tm_memory``."""
        ctx, cfg = self.ctx, self.ctx.cfg
        probe = self._probe()
        est = self.estimate(probe=probe)
        avail, source = available_memory(ctx.device)
        budget = USABLE_FRACTION * avail
        requested = cfg.tm_memory
        mode = requested if requested in MODES else ("full" if est["full"] <= budget else "checkpoint")
        batch, subset = self._sizes()
        self.memory_plan = {"requested": requested, "mode": mode, "available_bytes": int(avail),
                            "available_source": source, "estimate_bytes": est, "batch": batch, "subset": subset,
                            "syn_steps": cfg.syn_steps, "probe": {k: int(v) for k, v in probe.items()}}
        if est[mode] > budget:
            raise ConfigError(f"TM memory pre-flight: --tm-memory {mode} needs about {fmt_bytes(est[mode])} "
                              f"({cfg.syn_steps} steps × {batch} images), {fmt_bytes(avail)} available "
                              f"({source}); {self._what_fits(mode, est, budget, probe)}")
        if notify is not None:
            extra = ""
            if requested == "auto" and mode != "full":
                extra = f"; full would need {fmt_bytes(est['full'])}"
            notify(f"TM memory: {mode} (estimated peak {fmt_bytes(est[mode])} of {fmt_bytes(avail)} "
                   f"{source}{extra})")
        return cfg.model_copy(update={"tm_memory": mode})

    def _what_fits(self, mode: str, est: dict, budget: float, probe: dict) -> str:
        if mode == "full" and est["checkpoint"] <= budget:
            return f"use --tm-memory checkpoint (about {fmt_bytes(est['checkpoint'])}, exact)"
        upper = self._sizes()[0]
        fit_mode = "checkpoint" if mode == "full" else mode
        best = largest_batch(lambda bs: self.estimate(bs, probe)[fit_mode] <= budget, upper)
        if best >= 1:
            flag = "" if fit_mode == mode else f"--tm-memory {fit_mode} "
            return f"use {flag}--batch-syn {best} (about {fmt_bytes(self.estimate(best, probe)[fit_mode])})"
        return "no --batch-syn fits; use fewer --syn-steps, a smaller --ipc or a larger machine"

    # ---------------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {"syn_lr": self.syn_lr.detach().cpu().clone(), "lr_optimizer": self.lr_optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.syn_lr.copy_(state["syn_lr"].to(self.syn_lr.device))
        self.lr_optimizer.load_state_dict(state["lr_optimizer"])

    def header_fields(self) -> dict:
        return {"syn_lr": float(self.syn_lr.detach())}


def preflight(ctx: Context, notify=None) -> tuple:
    """Run TM's memory pre-flight on ``ctx`` (its images may be stand-ins of the right shape):
    (config with the resolved ``tm_memory``, the plan)."""
    method = TrajectoryMatching(ctx)
    cfg = method.plan_memory(notify=notify)
    return cfg, method.memory_plan
