"""The distillation run: setup, the iteration loop, evaluation, logging, checkpoint/resume, output.

Files next to the output ``X.gsd``:

- ``X.gsd.config.json``  the resolved configuration (written at the start);
- ``X.gsd.log.jsonl``    one JSON record per line: ``start``, ``iter`` (losses, seconds per iteration,
  seconds and share spent in the forward render + transform), ``eval``, ``checkpoint``, ``end``;
- ``X.gsd.ckpt``         the checkpoint (``--save-every``, Ctrl-C, ``stop_after``); removed when the run
  completes. It holds the fp32 Gaussian masters, the Adam state, the method's state (TM: α and its
  SGD state), the iteration, the init record and every RNG state (torch CPU, CUDA, numpy, python).

Determinism: each iteration reseeds every RNG from ``derive_seed(seed, iteration[, rank])`` (TM adds
the rank), so resuming from a checkpoint reproduces the uninterrupted run exactly (bit-for-bit on CPU;
on GPU up to the non-determinism of atomics in the CUDA backward).
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from gsdd_cli.distill.common import (
    Context,
    any_rank,
    barrier,
    broadcast_params,
    derive_seed,
    init_distributed,
    rank_device,
    shutdown_distributed,
    rng_state,
    seed_everything,
    set_rng_state,
)
from gsdd_cli.distill.config import RUN_CONTROL_FIELDS, DistillConfig
from gsdd_cli.distill.params import (
    attach_real_data,
    images_from_state,
    initial_images,
    make_context,
    prepare,
    stand_in_images,
)
from gsdd_cli.errors import ConfigError, GsddError
from gsdd_cli.gsdfile import atomic_write, make_header, save_gsd
from gsdd_cli.synthetic import SyntheticImages

CHECKPOINT_FORMAT = "gsdd-checkpoint"
CHECKPOINT_VERSION = 1


def _methods() -> dict[str, type]:
    from gsdd_cli.distill.dc import GradientMatching
    from gsdd_cli.distill.dm import DistributionMatching
    from gsdd_cli.distill.tm import TrajectoryMatching

    return {"dm": DistributionMatching, "dc": GradientMatching, "tm": TrajectoryMatching}


def run_paths(out: Path | str) -> dict[str, Path]:
    out = Path(out)
    return {
        "out": out,
        "config": out.with_name(out.name + ".config.json"),
        "log": out.with_name(out.name + ".log.jsonl"),
        "checkpoint": out.with_name(out.name + ".ckpt"),
    }


@dataclass
class DistillStep:
    """Progress after one iteration (passed to ``on_step``)."""

    iteration: int  # iterations done (1-based)
    total: int
    loss: float
    metrics: dict[str, float]
    seconds: float  # this iteration's wall time
    render_share: float  # fraction of it spent in the forward render + transform
    eval_mean: Optional[float] = None
    eval_std: Optional[float] = None


@dataclass
class DistillResult:
    out: Path
    config: DistillConfig
    iterations: int  # iterations done
    seconds: float
    final_loss: float
    syn_lr: Optional[float] = None
    evals: list[dict] = field(default_factory=list)
    interrupted: bool = False
    checkpoint: Optional[Path] = None
    log: Optional[Path] = None
    init: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)  # TM: the pre-flight memory plan (mode, estimates)


class DistillInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run. ``checkpoint`` is the file to resume from (None if none could be saved)."""

    def __init__(self, checkpoint: Path | None, iteration: int):
        super().__init__(f"interrupted after iteration {iteration}")
        self.checkpoint = checkpoint
        self.iteration = iteration


class _SigintFlag:
    """First Ctrl-C: set a flag (the loop finishes the iteration, saves, stops). Second: raise."""

    def __init__(self, notify: Callable[[str], None] | None):
        self.flag = False
        self.notify = notify
        self.previous = None

    def __enter__(self) -> "_SigintFlag":
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True
        if self.notify:
            self.notify("interrupt: finishing this iteration, then saving a checkpoint (Ctrl-C again to abort)")

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


# ------------------------------------------------------------------------------------ checkpoints
def save_checkpoint(path: Path, *, cfg: DistillConfig, iteration: int, images: SyntheticImages,
                    optimizer: torch.optim.Optimizer, method, elapsed: float, init: dict) -> Path:
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "iteration": int(iteration),
        "config": cfg.model_dump(mode="json"),
        "images": images.state_tensors(),
        "labels": images.labels.detach().cpu().clone(),
        "optimizer": optimizer.state_dict(),
        "method": method.state_dict(),
        "rng": rng_state(),
        "elapsed": float(elapsed),
        "init": init,
    }
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    return path


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"no checkpoint {path} to resume from",
                          hint="run without --resume to start afresh (checkpoints are written with --save-every and on Ctrl-C)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"checkpoint {path} is unreadable ({str(e).splitlines()[0][:100]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path} is not a gsdd checkpoint")
    if state.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(f"checkpoint {path} has version {state.get('version')}, this gsdd reads {CHECKPOINT_VERSION}")
    return state


def _check_resume_config(cfg: DistillConfig, saved: dict, path: Path) -> None:
    now = cfg.model_dump(mode="json")
    for key in sorted(now):
        if key in RUN_CONTROL_FIELDS:
            continue
        if now[key] != saved.get(key):
            raise ConfigError(
                f"cannot resume from {path}: {key} was {saved.get(key)!r}, now {now[key]!r}",
                hint="resume with the same settings (only iterations, eval/save/log frequency, device and "
                "backend may change), or run without --resume",
            )


# ------------------------------------------------------------------------------------------- log
class _Log:
    def __init__(self, path: Path | None, resume_from: int | None):
        self.path = path
        self.f = None
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_from is not None and path.is_file():
            kept = []
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if rec.get("iteration", 0) <= resume_from and rec.get("event") != "end":
                    kept.append(line)
            text = "".join(k + "\n" for k in kept)
            atomic_write(path, lambda tmp: Path(tmp).write_text(text))
            self.f = open(path, "a")
        else:
            self.f = open(path, "w")

    def write(self, record: dict) -> None:
        if self.f is not None:
            self.f.write(json.dumps(record, default=_json_default) + "\n")
            self.f.flush()

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    return str(o)


# ---------------------------------------------------------------------------------------- setup
def _write_json(path: Path, obj: dict) -> None:
    text = json.dumps(obj, indent=2, default=_json_default)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


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
    checkpoint at the end of the running iteration and raises :class:`DistillInterrupted`.
    """
    from gsdd_cli.data import default_transform_kind, load_dataset, make_transform
    from gsdd_cli.devices import resolve_device

    if not cfg.out:
        raise ConfigError("no output file: give --out FILE.gsd")
    t_start = time.perf_counter()
    paths = run_paths(cfg.out)
    dinfo = init_distributed(cfg.device)
    device = rank_device(resolve_device(cfg.device), dinfo)
    ds = load_dataset(cfg.dataset, cfg.data_dir)
    kind = cfg.transform or default_transform_kind(ds.name, cfg.algo)
    cfg = cfg.model_copy(update={"transform": kind})
    transform = make_transform(ds, kind).to(device)

    ckpt = None
    if resume:
        ckpt = load_checkpoint(paths["checkpoint"])
        if cfg.tm_memory == "auto":  # keep the mode the run resolved to (modes agree only to rounding)
            cfg = cfg.model_copy(update={"tm_memory": ckpt["config"].get("tm_memory", "full")})
        _check_resume_config(cfg, ckpt["config"], paths["checkpoint"])
    if cfg.algo == "tm" and not cfg.buffers:
        from gsdd_cli.distill.experts import ensure_experts

        cfg = cfg.model_copy(update={"buffers": str(ensure_experts(cfg, ds, notify=notify if dinfo.is_main else None))})
    memory_plan: dict = {}
    if cfg.algo == "tm":  # memory pre-flight before the (possibly long) init, on stand-in images
        from gsdd_cli.distill.tm import preflight

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
    method = _methods()[cfg.algo](ctx)
    method.memory_plan = memory_plan
    start_it = 0
    elapsed_before = 0.0
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        method.load_state_dict(ckpt["method"])
        set_rng_state(ckpt["rng"])
        start_it = int(ckpt["iteration"])
        elapsed_before = float(ckpt.get("elapsed", 0.0))

    main = dinfo.is_main
    if main:
        _write_json(paths["config"], cfg.model_dump(mode="json"))
    log = _Log(paths["log"] if main else None, start_it if ckpt is not None else None)
    log.write({"event": "resume" if ckpt is not None else "start", "iteration": start_it, "time": time.time(),
               "world_size": dinfo.world, "device": str(device), "init": init_info if ckpt is None else None,
               "memory": getattr(method, "memory_plan", None)})

    evaluator = _Evaluator(ctx, ds, method) if (cfg.eval_every and main) else None
    result = DistillResult(out=paths["out"], config=cfg, iterations=start_it, seconds=0.0, final_loss=float("nan"),
                           log=paths["log"], init=init_info, memory=dict(getattr(method, "memory_plan", {})))
    seed_rank = dinfo.rank if getattr(method, "seed_per_rank", False) else 0
    last_saved: Path | None = paths["checkpoint"] if ckpt is not None else None
    total = cfg.iterations
    t_loop = time.perf_counter()

    def checkpoint(done: int) -> Path | None:
        nonlocal last_saved
        if main:
            save_checkpoint(paths["checkpoint"], cfg=cfg, iteration=done, images=images, optimizer=optimizer,
                            method=method, elapsed=elapsed_before + time.perf_counter() - t_loop, init=init_info)
            log.write({"event": "checkpoint", "iteration": done, "path": str(paths["checkpoint"])})
        barrier(dinfo)
        last_saved = paths["checkpoint"]
        return last_saved

    done = start_it
    consistent = True
    try:
        with _SigintFlag(notify) as sigint:
            for it in range(start_it, total):
                consistent = False
                seed_everything(derive_seed(cfg.seed, it, seed_rank))
                ctx.render_seconds = 0.0
                t0 = time.perf_counter()
                metrics = method.step(it)
                dt = time.perf_counter() - t0
                loss = float(metrics["loss"])
                if not math.isfinite(loss):
                    raise GsddError(f"the loss became {loss} at iteration {it + 1}; lower --lr or check the data")
                done = it + 1
                consistent = True
                result.iterations, result.final_loss = done, loss
                share = ctx.render_seconds / dt if dt > 0 else 0.0
                if done % cfg.log_every == 0 or done == total:
                    log.write({"event": "iter", "iteration": done, **{k: _round(v) for k, v in metrics.items()},
                               "seconds": round(dt, 5), "render_seconds": round(ctx.render_seconds, 5),
                               "render_share": round(share, 4)})
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
        header = make_header(
            images, dataset=cfg.dataset, class_names=list(ds.class_names), ipc=cfg.ipc,
            transform=kind, transform_params=transform.describe(), algorithm=cfg.algo,
            config={**cfg.model_dump(mode="json"), "init_record": init_info, "iterations_done": done,
                    "final_loss": _round(result.final_loss), "world_size": dinfo.world},
            **fields,
        )
        save_gsd(paths["out"], images, header)
        if paths["checkpoint"].exists():
            paths["checkpoint"].unlink()
        log.write({"event": "end", "iteration": done, "seconds": round(result.seconds, 3),
                   "total_seconds": round(time.perf_counter() - t_start, 3), "syn_lr": result.syn_lr})
    log.close()
    shutdown_distributed(dinfo)
    return result


def _round(v: Any) -> Any:
    return round(v, 7) if isinstance(v, float) else v


class _Evaluator:
    """``--eval-every``: render, transform, train ``eval_runs`` fresh networks for ``eval_epochs``."""

    def __init__(self, ctx: Context, ds, method):
        from gsdd_cli.data.transforms import apply_in_batches

        self.ctx, self.method = ctx, method
        self.test_x = apply_in_batches(ctx.transform, ds.x_test, ctx.device)
        self.test_y = ds.y_test.to(ctx.device)

    def __call__(self, iteration: int) -> dict:
        from gsdd_cli.evaluate import EvalConfig, render_all, train_and_evaluate

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
    "load_checkpoint",
    "run_paths",
    "save_checkpoint",
]
