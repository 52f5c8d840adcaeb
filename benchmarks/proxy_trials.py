"""Whole proxy-training trials as a study runs them: `python -m admire.proxy.train` in a new
process per trial, timed from outside, with and without torch.compile.

    python benchmarks/proxy_trials.py [--device auto|cpu|cuda]

Each row is one trial process on the embedded corpus (uniform mixture): its wall seconds
(process start, imports, compilation, training, evaluation at `eval_at`), the first training
step's seconds (on a GPU, compilation and warm-up), tokens/s and MFU after the first step,
and the final mean validation loss. On a GPU, each compiled setting runs twice against a new
inductor cache folder: `cold` (the first trial of a shape on a machine) and `warm` (every
later one: the cache is on disk), then `eager` (compile: off).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from admire.config import ProxyRunnerConfig
from admire.proxy.corpus import prepare_corpus

DOMAINS = ["code", "docs", "legal", "i18n", "scripture", "math"]
# (model size, tokens, batch, sequence length) per device.
GPU_RUNS = [("1M", 5_000_000, 32, 512), ("1M", 1_000_000, 4, 256), ("30M", 20_000_000, 32, 512)]
CPU_RUNS = [("1M", 200_000, 4, 256)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    cache = os.environ.get("ADMIRE_CACHE") or os.path.join(tempfile.gettempdir(), "admire-bench")
    config = ProxyRunnerConfig(kind="proxy", max_mb_per_domain=1.0, cache_dir=cache)
    corpus = prepare_corpus(config, DOMAINS, log=lambda _: None)
    domains = {n: d.job_spec() for n, d in corpus.domains.items()}
    modes = ["cold", "warm", "eager"] if cuda else ["eager"]
    print(f"proxy trials on {torch.cuda.get_device_name() if cuda else 'CPU, 1 thread'}")
    print(
        f"{'mode':>5} {'size':>4} {'batch':>7} {'tokens':>11} {'process s':>9} "
        f"{'first step s':>12} {'train s':>8} {'tokens/s':>11} {'MFU':>6} {'val loss':>8}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for size, tokens, batch, seq in GPU_RUNS if cuda else CPU_RUNS:
            inductor = Path(tmp) / f"inductor-{size}-{batch}x{seq}"
            for mode in modes:
                job = {
                    "weights": dict.fromkeys(DOMAINS, 1 / len(DOMAINS)),
                    "model_size": size,
                    "tokens": tokens,
                    "seed": 0,
                    "domains": domains,
                    "vocab_size": corpus.vocab_size,
                    "seq_len": seq,
                    "batch_size": batch,
                    "device": "cuda" if cuda else "cpu",
                    "compile": "off" if mode == "eager" else "auto",
                }
                job_path, out_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
                job_path.write_text(json.dumps(job))
                env = os.environ | {"TORCHINDUCTOR_CACHE_DIR": str(inductor)}
                start = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "admire.proxy.train", str(job_path), str(out_path)],
                    check=True,
                    capture_output=True,
                    env=env,
                )
                wall = time.perf_counter() - start
                result = json.loads(out_path.read_text())
                if result["failed"]:
                    raise RuntimeError(f"{size} {mode}: {result['error']}")
                m = result["metrics"]
                loss = sum(m[f"loss.{d}"] for d in DOMAINS) / len(DOMAINS)
                mfu = f"{100 * m['mfu']:.1f}%" if "mfu" in m else "-"
                print(
                    f"{mode:>5} {size:>4} {f'{batch}x{seq}':>7} {tokens:>11,} {wall:>9.1f} "
                    f"{m['first_step_s']:>12.2f} {m['train_s']:>8.2f} {m['tokens_per_s']:>11,.0f} "
                    f"{mfu:>6} {loss:>8.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
