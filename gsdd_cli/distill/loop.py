"""The distillation run: setup, the iteration loop, evaluation, logging, checkpoint/resume, output.

Files next to the output ``X.gsd`` (paths and log: :mod:`gsdd_cli.distill.runlog`; checkpoint:
:mod:`gsdd_cli.distill.checkpoint`):

- ``X.gsd.config.json``  the resolved configuration (written at the start);
- ``X.gsd.log.jsonl``    one JSON record per line: ``start``, ``iter`` (losses, seconds per iteration,
  seconds and share spent in the forward render + transform), ``eval``, ``checkpoint``, ``end``;
- ``--tensorboard DIR``  the same ``iter`` and ``eval`` records (and image grids) as TensorBoard
  event files (:mod:`gsdd_cli.distill.tensorboard`);
- ``X.gsd.ckpt``         the checkpoint (``--save-every``, Ctrl-C, ``stop_after``, divergence); removed
  when the run completes. It holds the fp32 Gaussian masters, the Adam state, the method's state (TM:
  α and its SGD state), the iteration, the last loss, the init record, every RNG state (torch CPU,
  CUDA, numpy, python) and a sha256 checksum of all of that, verified on ``--resume``.

Outputs are checked before any work (:func:`check_run_outputs`); the config and log files are
created once setup has succeeded and are removed again if the run fails without leaving a
checkpoint to resume from. A non-finite loss or parameter stops the run with
:class:`~gsdd_cli.core.errors.DivergenceError` after writing the last good state as the checkpoint
(a fresh run that diverges in its first iteration saves the start point, so ``--resume --lr
<lower>`` skips the init fit); ``--resume`` may lower ``lr``.

Determinism: each iteration reseeds every RNG from ``derive_seed(seed, iteration[, rank])`` (TM adds
the rank), so resuming from a checkpoint reproduces the uninterrupted run exactly (bit-for-bit on CPU;
on GPU up to the non-determinism of atomics in the CUDA backward).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist

from gsdd_cli.core.algorithms import get_algorithm
from gsdd_cli.core.devices import resolve_device
from gsdd_cli.core.errors import ConfigError, DivergenceError, FileSystemError, GsddError
from gsdd_cli.core.outputs import (
    atomic_write_json,
    remove_quietly,
)
from gsdd_cli.data import default_transform_kind, load_dataset, make_transform
from gsdd_cli.data.streaming import require_in_memory
from gsdd_cli.distill.results import DistillInterrupted, DistillResult, DistillStep
from gsdd_cli.distill.sre2l import run_recovery
from gsdd_cli.data.transforms import apply_in_batches
from gsdd_cli.distill.checkpoint import capture_state, check_resume_config, load_checkpoint, write_checkpoint
from gsdd_cli.distill.common import (
    Context,
    DistInfo,
    any_rank,
    barrier,
    broadcast_params,
    derive_seed,
    init_distributed,
    rank_device,
    seed_everything,
    set_rng_state,
    shutdown_distributed,
)
from gsdd_cli.distill.config import DistillConfig
from gsdd_cli.distill.experts import ensure_experts
from gsdd_cli.distill.method import Method
from gsdd_cli.distill.params import (
    attach_real_data,
    images_from_state,
    initial_images,
    make_context,
    optimizer_groups,
    prepare,
    stand_in_images,
)
from gsdd_cli.distill.runlog import RunLog, SigintFlag, check_run_outputs, run_paths
from gsdd_cli.distill.tensorboard import TensorBoardLog
from gsdd_cli.distill.tm import preflight
from gsdd_cli.evaluate import EvalConfig, render_all, train_and_evaluate
from gsdd_cli.sets.gsdfile import make_header, save_gsd
from gsdd_cli.sets.synthetic import SyntheticImages


# ---------------------------------------------------------------------------------------- setup


def distill(
    cfg: DistillConfig,
    on_step: Callable[[DistillStep], None] | None = None,
    *,
    on_init_step: Callable[[Any], None] | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    notify: Callable[[str], None] | None = None,
) -> DistillResult:
    """Run a distillation described by a resolved config (see :func:`gsdd_cli.distill.build_config`).

    ``resume`` continues from ``<out>.ckpt``. ``stop_after=k`` stops after k iterations (in total)
    and leaves a checkpoint, as an interruption would (``result.interrupted`` is True). Ctrl-C saves a
    checkpoint at the end of the running iteration and raises :class:`DistillInterrupted`. A
    non-finite loss or parameter raises :class:`~gsdd_cli.core.errors.DivergenceError` after saving the
    last good state as the checkpoint. Outputs are checked before any work; on a failure that leaves
    no checkpoint, the config and log files this call created are removed again, and so is its
    ``--tensorboard`` event file (with the folders it created; ``--resume`` keeps it).
    """
    if cfg.algo == "sre2l":  # independent units, not iterations over the whole set (distill/sre2l.py)
        return run_recovery(cfg, on_step, resume=resume, notify=notify)
    check_run_outputs(cfg)
    side: dict[str, Any] = {"created": [], "checkpoint_written": False}
    try:
        return _run(cfg, on_step, on_init_step=on_init_step, resume=resume, stop_after=stop_after,
                    notify=notify, side=side)
    except BaseException:
        if side.get("log") is not None:
            side["log"].close()  # closes the TensorBoard writer too (idempotent)
        if not resume and not side["checkpoint_written"]:
            remove_quietly(side["created"])  # nothing to resume: leave no debris
            if side.get("tb") is not None and not side.get("output_written"):
                side["tb"].discard()  # this call's event file and the folders it made, nothing else
        if dist.is_available() and dist.is_initialized():
            shutdown_distributed(DistInfo(rank=dist.get_rank(), world=dist.get_world_size(), grouped=True),
                                 wait=False)
        raise


def _run(
    cfg: DistillConfig,
    on_step: Callable[[DistillStep], None] | None,
    *,
    on_init_step: Callable[[Any], None] | None,
    resume: bool,
    stop_after: int | None,
    notify: Callable[[str], None] | None,
    side: dict[str, Any],
) -> DistillResult:
    if not cfg.out:
        raise ConfigError("no output file: give --out FILE.gsd")
    t_start = time.perf_counter()
    paths = run_paths(cfg.out)
    dinfo = init_distributed(cfg.device)
    device = rank_device(resolve_device(cfg.device), dinfo)
    ds = load_dataset(cfg.dataset, cfg.data_dir)
    if cfg.algo in ("dm", "dc"):  # they match against real batches drawn from every training image
        require_in_memory(ds.x_train, f"--algo {cfg.algo}")
    if cfg.eval_every:
        ds.require_test("--eval-every")
    kind = cfg.transform or default_transform_kind(ds.name, cfg.algo)
    cfg = cfg.model_copy(update={"transform": kind})
    transform = make_transform(ds, kind).to(device)

    ckpt = None
    if resume:
        ckpt = load_checkpoint(paths["checkpoint"])
        if cfg.tm_memory == "auto":  # keep the mode the run resolved to (modes agree only to rounding)
            cfg = cfg.model_copy(update={"tm_memory": ckpt["config"].get("tm_memory", "full")})
        check_resume_config(cfg, ckpt["config"], paths["checkpoint"])
        if cfg.iterations < int(ckpt["iteration"]):
            raise ConfigError(f"--iterations {cfg.iterations} is below the {ckpt['iteration']} iterations the "
                              f"checkpoint {paths['checkpoint']} already has",
                              hint=f"give --iterations {ckpt['iteration']} or more")
    if cfg.algo == "tm" and not cfg.buffers:
        cfg = cfg.model_copy(update={"buffers": str(ensure_experts(cfg, ds, notify=notify if dinfo.is_main else None))})
    memory_plan: dict = {}
    if cfg.algo == "tm":  # memory pre-flight before the (possibly long) init, on stand-in images
        probe_ctx = make_context(cfg, device, stand_in_images(cfg, ds, transform).to(device), transform, ds, dinfo)
        cfg, memory_plan = preflight(probe_ctx, notify=notify if dinfo.is_main else None)
        del probe_ctx
    if ckpt is not None:
        images = images_from_state(cfg, ckpt["images"], ckpt["labels"], ds, transform)
        init_info = ckpt.get("init", {})
    else:
        images, init_info = initial_images(cfg, ds, device, transform, on_init_step)
    images = images.to(device)
    prepare(images, cfg)
    broadcast_params(images, dinfo)
    ctx = make_context(cfg, device, images, transform, ds, dinfo)
    optimizer = ctx.optimizer
    attach_real_data(ctx, ds)
    method: Method = get_algorithm(cfg.algo).load()(ctx)
    method.memory_plan = memory_plan
    start_it = 0
    elapsed_before = 0.0
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        for group, fresh in zip(optimizer.param_groups, optimizer_groups(images, cfg)):
            group["lr"] = fresh["lr"]  # --resume may lower lr / lr_img (after a divergence)
        method.load_state_dict(ckpt["method"])
        set_rng_state(ckpt["rng"])
        start_it = int(ckpt["iteration"])
        elapsed_before = float(ckpt.get("elapsed", 0.0))

    main = dinfo.is_main
    if main:  # setup succeeded: now the side files appear
        side["created"] += [paths["config"], paths["log"]]
        atomic_write_json(paths["config"], cfg.model_dump(mode="json"))
    log = side["log"] = RunLog(paths["log"] if main else None, start_it if ckpt is not None else None)
    log.mirror = tb = side["tb"] = TensorBoardLog(cfg.tensorboard if main else None, images_every=cfg.tensorboard_images_every,
                                     render=lambda index: ctx.images.render(index, backend=cfg.backend),
                                     labels=images.labels)
    log.write({"event": "resume" if ckpt is not None else "start", "iteration": start_it, "time": time.time(),
               "world_size": dinfo.world, "device": str(device), "init": init_info if ckpt is None else None,
               "memory": method.memory_plan,
               **({"lr": cfg.lr, "checkpoint_lr": ckpt["config"].get("lr")} if ckpt is not None else {})})

    evaluator = _Evaluator(ctx, ds, method) if (cfg.eval_every and main) else None
    result = DistillResult(out=paths["out"], config=cfg, iterations=start_it, seconds=0.0,
                           final_loss=ckpt.get("last_loss") if ckpt is not None else None,
                           log=paths["log"], init=init_info, memory=dict(method.memory_plan))
    seed_rank = dinfo.rank if method.seed_per_rank else 0
    last_saved: Path | None = paths["checkpoint"] if ckpt is not None else None
    total = cfg.iterations
    t_loop = time.perf_counter()

    def checkpoint(done: int, captured: dict | None = None, elapsed: float | None = None,
                   last_loss: Optional[float] = None) -> Path | None:
        """Save the live state (or a ``captured`` snapshot) as the checkpoint of iteration ``done``."""
        nonlocal last_saved
        if main:
            write_checkpoint(
                paths["checkpoint"], cfg, captured or capture_state(images, optimizer, method, copy_state=False),
                iteration=done, init=init_info,
                elapsed=elapsed if elapsed is not None else elapsed_before + time.perf_counter() - t_loop,
                last_loss=last_loss if captured is not None else result.final_loss,
            )
            side["checkpoint_written"] = True
            log.write({"event": "checkpoint", "iteration": done, "path": str(paths["checkpoint"])})
        barrier(dinfo)
        last_saved = paths["checkpoint"]
        return last_saved

    def diverged(it: int, reason: str, snapshot: dict | None) -> DivergenceError:
        """Save the last good state (the snapshot taken before iteration ``it``) and describe it."""
        saved = last_saved  # a resumed run that fails at once keeps the checkpoint it started from
        if ckpt is None or it > start_it:
            snap = snapshot or {}  # only the main rank holds one; the others join the barrier
            saved = checkpoint(it, snap.get("captured"), snap.get("elapsed"), snap.get("last_loss"))
        log.write({"event": "diverged", "iteration": it + 1, "reason": reason,
                   "checkpoint": str(saved) if saved else None, "checkpoint_iteration": it if saved else None})
        where = (f"the state after iteration {it} is saved in {saved}" if it > 0 else
                 f"the start point (before iteration 1) is saved in {saved}") if saved else "no checkpoint could be kept"
        cause = " (the first iteration: check the data and the --init file)" if it == 0 else ""
        lower = f"{cfg.lr / 10:g}"
        return DivergenceError(
            f"training diverged: {reason} at iteration {it + 1} with lr {cfg.lr:g}{cause}; {where}",
            hint=(f"resume with a lower learning rate: the same command with --resume --lr {lower}"
                  if saved else f"run again with a lower learning rate, e.g. --lr {lower}"),
            checkpoint=saved, iteration=it,
        )

    done = start_it
    consistent = True
    try:
        with SigintFlag(notify) as sigint:
            for it in range(start_it, total):
                # the last good state, kept in memory so that a divergence can still save it
                snapshot = ({"captured": capture_state(images, optimizer, method, copy_state=True),
                             "elapsed": elapsed_before + time.perf_counter() - t_loop,
                             "last_loss": result.final_loss} if main else None)
                consistent = False
                seed_everything(derive_seed(cfg.seed, it, seed_rank))
                ctx.render_seconds = 0.0
                t0 = time.perf_counter()
                metrics = method.step(it)
                dt = time.perf_counter() - t0
                loss = float(metrics["loss"])
                reason = _nonfinite(loss, images, method)
                if any_rank(reason is not None, dinfo, device):
                    raise diverged(it, reason or "another rank saw a non-finite value", snapshot)
                done = it + 1
                consistent = True
                result.iterations, result.final_loss = done, loss
                share = ctx.render_seconds / dt if dt > 0 else 0.0
                if done % cfg.log_every == 0 or done == total:
                    log.write({"event": "iter", "iteration": done, **{k: _round(v) for k, v in metrics.items()},
                               "seconds": round(dt, 5), "render_seconds": round(ctx.render_seconds, 5),
                               "render_share": round(share, 4)})
                if tb.wants_images(done, start_it + 1, min(total, stop_after or total)):
                    tb.images(done)
                step = DistillStep(done, total, loss, metrics, dt, share)
                if cfg.eval_every and (done % cfg.eval_every == 0 or done == total):
                    if evaluator is not None:  # main process only; the others wait
                        ev = evaluator(done)
                        result.evals.append(ev)
                        log.write({"event": "eval", "iteration": done, **ev})
                        step.eval_mean, step.eval_std = ev["mean"], ev["std"]
                    barrier(dinfo)
                if on_step is not None:
                    on_step(step)
                if cfg.save_every and done % cfg.save_every == 0 and done < total:
                    checkpoint(done)
                if stop_after is not None and done >= stop_after and done < total:
                    result.interrupted = True
                    result.checkpoint = checkpoint(done)
                    break
                if any_rank(sigint.flag, dinfo, device) and done < total:
                    raise DistillInterrupted(checkpoint(done), done)
    except DistillInterrupted:
        log.write({"event": "interrupted", "iteration": done})
        log.close()
        raise
    except KeyboardInterrupt:
        saved = checkpoint(done) if consistent and done > start_it else last_saved
        log.write({"event": "interrupted", "iteration": done})
        log.close()
        raise DistillInterrupted(saved, done if consistent else (start_it if saved is None else done)) from None
    except BaseException:
        log.close()
        raise

    result.seconds = elapsed_before + time.perf_counter() - t_loop
    fields = method.header_fields()
    result.syn_lr = fields.get("syn_lr")
    if result.interrupted:
        log.write({"event": "stopped", "iteration": done})
        log.close()
        return result
    if main:
        note = {} if result.final_loss is not None else {
            "final_loss_note": "unknown: no iteration ran in this call and the checkpoint recorded no loss"}
        header = make_header(
            images, dataset=cfg.dataset, class_names=list(ds.class_names), ipc=cfg.ipc,
            transform=kind, transform_params=transform.describe(), algorithm=cfg.algo,
            config={**cfg.model_dump(mode="json"), "init_record": init_info, "iterations_done": done,
                    "final_loss": _round(result.final_loss), **note, "world_size": dinfo.world},
            **fields,
        )
        try:
            save_gsd(paths["out"], images, header)
            side["output_written"] = True
        except FileSystemError as e:  # e.g. a full disk: keep the result as a checkpoint if at all possible
            try:  # (no barrier here: only the main rank writes the output)
                write_checkpoint(paths["checkpoint"], cfg, capture_state(images, optimizer, method, copy_state=False),
                                  iteration=done, init=init_info, elapsed=result.seconds, last_loss=result.final_loss)
                side["checkpoint_written"] = True
                e.hint = (f"the finished state is saved in {paths['checkpoint']}: make room, then run the same "
                          "command with --resume to write the output")
            except GsddError:
                pass
            raise
        if paths["checkpoint"].exists():
            paths["checkpoint"].unlink()
        log.write({"event": "end", "iteration": done, "seconds": round(result.seconds, 3),
                   "total_seconds": round(time.perf_counter() - t_start, 3), "syn_lr": result.syn_lr})
    log.close()
    shutdown_distributed(dinfo)
    return result


def _round(v: Any) -> Any:
    return round(v, 7) if isinstance(v, float) else v


def _nonfinite(loss: float, images: SyntheticImages, method) -> str | None:
    """Why the state after a step is unusable (a NaN/Inf loss, parameter or learned lr), else None."""
    if not math.isfinite(loss):
        return f"the loss became {loss}"
    bad = images.first_nonfinite()
    if bad is not None:
        return f"the {images.parameterization} parameter {bad!r} became NaN or Inf"
    syn_lr = method.header_fields().get("syn_lr")
    if isinstance(syn_lr, float) and not math.isfinite(syn_lr):
        return f"the learned lr α became {syn_lr}"
    return None


class _Evaluator:
    """``--eval-every``: render, transform, train ``eval_runs`` fresh networks for ``eval_epochs``."""

    def __init__(self, ctx: Context, ds, method):
        self.ctx, self.method = ctx, method
        self.test_x = apply_in_batches(ctx.transform, ds.x_test, ctx.device, stream=True)
        self.test_y = ds.y_test.to(ctx.device)

    def __call__(self, iteration: int) -> dict:
        ctx, cfg = self.ctx, self.ctx.cfg
        with torch.no_grad():
            x = ctx.transform(render_all(ctx.images, ctx.device, cfg.backend))
        ecfg = EvalConfig(arch=cfg.model, epochs=cfg.eval_epochs, runs=cfg.eval_runs, seed=cfg.seed,
                          dsa=cfg.dsa, dsa_strategy=cfg.dsa_strategy, device=str(ctx.device))
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[ctx.device.index or 0] if ctx.device.type == "cuda" else []):
            r = train_and_evaluate(x, ctx.images.labels.to(ctx.device), self.test_x, self.test_y, ecfg,
                                   algorithm=cfg.algo, syn_lr=self.method.header_fields().get("syn_lr"),
                                   num_classes=ctx.num_classes)
        return {"mean": r.mean, "std": r.std, "best_mean": r.best_mean, "epochs": cfg.eval_epochs,
                "runs": r.runs, "lr": r.lr, "seconds": round(time.perf_counter() - t0, 3)}


__all__ = [
    "DistillInterrupted",
    "DistillResult",
    "DistillStep",
    "distill",
]
