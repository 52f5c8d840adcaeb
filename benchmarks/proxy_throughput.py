"""Proxy-training throughput per named model size: tokens/s (and MFU on a GPU).

    python benchmarks/proxy_throughput.py [--device auto|cpu|cuda] [--sizes 0.1M,1M] [--seconds 8]

Each size trains on the embedded corpus (uniform mixture) for about `--seconds` after a short
calibration run; the figure is training tokens/s after the first step, evaluation excluded.
CPU runs use one thread, as a trial does. On a GPU: bf16 autocast and torch.compile, batch
32 x 512; the calibration run starts from a cleared compiler state, as a trial's new process
does, and its first step (compilation and warm-up, which every trial pays once) is printed.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch

from admire.config import ProxyRunnerConfig
from admire.proxy.corpus import prepare_corpus
from admire.proxy.sizes import MODEL_SIZES
from admire.proxy.train import TrainJob, train

DOMAINS = ["code", "docs", "legal", "i18n", "scripture", "math"]
CPU_SIZES = ["0.1M", "0.5M", "1M", "3M", "10M", "30M"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--sizes", default="")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    sizes = args.sizes.split(",") if args.sizes else (list(MODEL_SIZES) if cuda else CPU_SIZES)
    batch, seq = (32, 512) if cuda else (4, 256)
    cache = os.environ.get("ADMIRE_CACHE") or os.path.join(tempfile.gettempdir(), "admire-bench")
    config = ProxyRunnerConfig(kind="proxy", max_mb_per_domain=1.0, cache_dir=cache)
    corpus = prepare_corpus(config, DOMAINS, log=lambda _: None)
    domains = {n: d.job_spec() for n, d in corpus.domains.items()}
    device = torch.cuda.get_device_name() if cuda else "CPU, 1 thread"
    print(
        f"proxy training throughput on {device} (batch {batch} x {seq}, vocab {corpus.vocab_size})"
    )
    print(f"{'size':>6} {'non-emb params':>15} {'tokens/s':>12} {'MFU':>7} {'first step s':>13}")

    def run(size: str, tokens: int) -> dict[str, float]:
        job = TrainJob(
            weights=dict.fromkeys(DOMAINS, 1 / len(DOMAINS)),
            model_size=size,
            tokens=tokens,
            seed=0,
            domains=domains,
            vocab_size=corpus.vocab_size,
            seq_len=seq,
            batch_size=batch,
            eval_at=[1.0],
            eval_tokens=seq,
            device="cuda" if cuda else "cpu",
        )
        result = train(job, log=lambda _: None)
        if result.failed:
            raise RuntimeError(f"{size}: {result.error}")
        return result.metrics

    for size in sizes:
        torch._dynamo.reset()
        calib = run(size, batch * seq * (20 if cuda else 4))
        tokens = max(batch * seq * 8, int(calib["tokens_per_s"] * args.seconds))
        m = run(size, tokens)
        mfu = f"{100 * m['mfu']:.1f}%" if "mfu" in m else "-"
        params = MODEL_SIZES[size].non_embedding_params
        first = calib["first_step_s"]
        print(
            f"{size:>6} {params:>15,} {m['tokens_per_s']:>12,.0f} {mfu:>7} {first:>13.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
