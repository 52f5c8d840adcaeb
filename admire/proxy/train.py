"""Train one proxy model at one fidelity and measure every domain's validation loss.

Runs in its own process (`python -m admire.proxy.train JOB.json RESULT.json`, started by the
local runner) so that a crash, a NaN or an out-of-memory error ends the trial, not the study.
The learning-rate schedule (linear warmup, cosine decay to `min_lr_ratio`) spans exactly the
run's token budget, so a short run is a complete run, not a truncated long one. Validation loss
is measured at the fractions `eval_at` of the budget; those intermediate points are observations
at lower token budgets for free.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from admire.proxy.formats import TokenSlice
from admire.proxy.model import GPT
from admire.proxy.sampler import MixtureSampler
from admire.proxy.sizes import flops_per_token, shape_of

# Dense bf16 peak FLOP/s by device name, for MFU; unknown devices report no MFU.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12}


@dataclass
class TrainJob:
    """Everything a proxy run needs, as plain data (written to JSON for the subprocess)."""

    weights: dict[str, float]
    model_size: str
    tokens: int
    seed: int
    domains: dict[str, dict[str, str]]
    """name -> {"train": TokenSlice fields, "val": ...} (TokenizedDomain.job_spec)"""
    vocab_size: int
    seq_len: int = 256
    batch_size: int = 4
    lr: float | None = None
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    eval_at: list[float] = field(default_factory=lambda: [0.125, 0.25, 0.5, 1.0])
    eval_tokens: int = 8192
    device: str = "auto"
    threads: int = 1
    compile: str = "auto"


@dataclass
class TrainResult:
    """What a run measured: final per-domain losses, the curve of intermediate ones, speed."""

    metrics: dict[str, float] = field(default_factory=dict)
    curve: list[dict] = field(default_factory=list)
    """[{"tokens": n, "metrics": {"loss.<domain>": ...}}] at every evaluation point."""
    series: dict[str, list[list[float]]] = field(default_factory=dict)
    """Step metrics for MLflow: name -> [[tokens, value], ...]."""
    info: dict[str, str] = field(default_factory=dict)
    failed: bool = False
    error: str = ""


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but torch sees no GPU")
    return torch.device(name)


def default_lr(d_model: int) -> float:
    """Peak LR by width: wider models need smaller steps (about 1/sqrt(width))."""
    return 2e-3 * math.sqrt(128 / d_model)


def lr_at(step: int, steps: int, peak: float, warmup: int, min_ratio: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class _Evaluator:
    """Fixed, evenly spaced validation windows per domain: every trial of a study is scored on
    the same tokens, so differences between trials are not sampling noise of the eval set."""

    def __init__(self, arrays: dict[str, np.ndarray], seq_len: int, eval_tokens: int) -> None:
        self.windows = {}
        for name, arr in arrays.items():
            n = max(1, min(eval_tokens // seq_len, (arr.size - 1) // seq_len))
            span = min(seq_len, arr.size - 1)
            starts = np.linspace(0, arr.size - span - 1, n).astype(np.int64)
            self.windows[name] = np.stack(
                [np.asarray(arr[s : s + span + 1], dtype=np.int64) for s in starts]
            )

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, device: torch.device, autocast) -> dict[str, float]:
        model.eval()
        out = {}
        for name, windows in self.windows.items():
            total, count = 0.0, 0
            for chunk in np.array_split(windows, max(1, len(windows) // 16)):
                x = torch.from_numpy(chunk).to(device)
                with autocast():
                    loss = model(x[:, :-1], x[:, 1:])
                total += float(loss) * len(chunk)
                count += len(chunk)
            out[f"loss.{name}"] = total / count
        model.train()
        return out


def train(job: TrainJob, log=print) -> TrainResult:  # type: ignore[no-untyped-def]
    """Train a model for `job.tokens` tokens on the job's mixture and evaluate it."""
    t0 = time.perf_counter()
    device = _device(job.device)
    if device.type == "cpu":
        torch.set_num_threads(job.threads)
    torch.manual_seed(job.seed)
    shape = shape_of(job.model_size)
    arrays = {n: TokenSlice(**d["train"]).open() for n, d in job.domains.items()}
    val = {n: TokenSlice(**d["val"]).open() for n, d in job.domains.items()}
    sampler = MixtureSampler(arrays, job.weights, job.batch_size, job.seq_len, job.seed)
    evaluate = _Evaluator(val, job.seq_len, job.eval_tokens)

    model = GPT(shape, job.vocab_size, job.seq_len).to(device)
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    compiled = job.compile == "on" or (job.compile == "auto" and device.type == "cuda")
    step_model = torch.compile(model) if compiled else model

    def autocast():  # type: ignore[no-untyped-def]
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    peak = job.lr if job.lr is not None else default_lr(shape.d_model)
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": job.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=peak,
        betas=(0.9, 0.95),
        fused=device.type == "cuda",
    )
    per_step = job.batch_size * job.seq_len
    steps = max(1, round(job.tokens / per_step))
    warmup = max(1, round(job.warmup_fraction * steps))
    evals = sorted({max(1, round(f * steps)) for f in job.eval_at})
    result = TrainResult()
    train_loss: list[list[float]] = []
    log_every = max(1, steps // 50)
    running: torch.Tensor | float = 0.0
    n_running = 0
    train_time, seen, untimed = 0.0, 0, 0
    first_step = 0.0
    t_train = time.perf_counter()
    for step in range(steps):
        lr = lr_at(step, steps, peak, warmup, job.min_lr_ratio)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = torch.from_numpy(sampler.batch()).to(device, non_blocking=True)
        with autocast():
            loss = step_model(batch[:, :-1], batch[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        # Summed on the device and read every `log_every` steps: a per-step read would make
        # the GPU wait for the host each step.
        running = running + loss.detach().float()
        n_running += 1
        seen = (step + 1) * per_step
        if step == 0 and steps > 1 and 1 not in evals:
            # The first step holds torch.compile's compilation and the device's warm-up (tens
            # of seconds on a GPU, more than a short run's training): it is reported apart, so
            # that tokens/s and MFU describe the training itself.
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            first_step = time.perf_counter() - t_train
            untimed = per_step
            t_train = time.perf_counter()
        if (step + 1) % log_every == 0 or step + 1 == steps or step + 1 in evals:
            value = float(running) / n_running
            if not math.isfinite(value):
                result.failed = True
                result.error = f"non-finite training loss ({value}) by step {step + 1}/{steps}"
                break
            train_loss.append([seen, value])
            running, n_running = 0.0, 0
        if step + 1 in evals:
            train_time += time.perf_counter() - t_train
            losses = evaluate(model, device, autocast)
            result.curve.append({"tokens": seen, "metrics": losses})
            mean = sum(losses.values()) / len(losses)
            log(
                f"step {step + 1}/{steps} ({seen:,} tokens): train loss {train_loss[-1][1]:.3f}"
                f", mean val loss {mean:.3f}, {(seen - untimed) / max(train_time, 1e-9):,.0f} tok/s"
            )
            if not all(math.isfinite(v) for v in losses.values()):
                result.failed = True
                result.error = f"non-finite validation loss at step {step + 1}/{steps}"
                break
            t_train = time.perf_counter()
    if result.curve and not result.failed:
        result.metrics = dict(result.curve[-1]["metrics"])
    wall = time.perf_counter() - t0
    trained = seen
    tokens_per_s = (trained - untimed) / train_time if train_time > 0 else 0.0
    fpt = flops_per_token(shape, job.vocab_size, job.seq_len)
    result.series["train_loss"] = train_loss
    result.metrics |= {
        "tokens_per_s": tokens_per_s,
        "train_s": train_time,
        "first_step_s": first_step,
        "wall_s": wall,
        "flops": fpt * trained,
    }
    result.info |= {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": "bf16" if use_bf16 else "fp32",
        "compiled": str(compiled),
        "steps": str(steps),
        "peak_lr": f"{peak:.3g}",
        "params_non_embedding": str(model.non_embedding_params()),
        "sequences_per_domain": json.dumps(sampler.counts()),
    }
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak_flops = next((v for k, v in PEAK_BF16.items() if k in name), None)
        if peak_flops:
            result.metrics["mfu"] = fpt * tokens_per_s / peak_flops
    return result


def main(argv: list[str] | None = None) -> int:
    """Subprocess entry point: read a TrainJob, write a TrainResult, both as JSON."""
    args = sys.argv[1:] if argv is None else argv
    job_path, out_path = Path(args[0]), Path(args[1])
    job = TrainJob(**json.loads(job_path.read_text()))
    try:
        result = train(job, log=lambda line: print(line, flush=True))
    except Exception as err:
        result = TrainResult(failed=True, error=f"{type(err).__name__}: {err}")
        traceback.print_exc()
    tmp = out_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(result)))
    os.replace(tmp, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
