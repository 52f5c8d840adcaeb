"""A stand-in for your own training script, as admire's command runner drives it.

It knows nothing of admire. It takes a data mixture, a model size, a token budget and a seed
on its command line, trains a model on that mixture, and writes one JSON line per evaluation
to the results file: `{"tokens": N, "metrics": {"loss.<domain>": ...}}`, the last line being
the final result. Replace it with your trainer and keep those two ends (see the README, "Your
own trainer").

The model is a low-rank bigram language model (embedding x unembedding, rank set by the
parameter budget) over a 48-symbol alphabet, trained with Adam on batches drawn from the
mixture. Each domain is a synthetic language: a bigram process made from the domain's name
around a part every domain shares, so domains help each other, and a small model has to
choose which to fit. Validation loss is exact (the cross-entropy against the domain's true
bigram process), so the only noise is the training data's. Needs numpy only.

    python mixture_toy.py --weights '{"prose": 0.5, "code": 0.5}' --params 768 \
        --tokens 32768 --seed 1 --out metrics.jsonl
"""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

import numpy as np

VOCAB = 48
BATCH = 256
LR = 0.05


def language(name: str) -> np.ndarray:
    """The bigram transition matrix (previous symbol x next symbol) of domain `name`."""
    shared = np.random.default_rng(0).normal(size=(VOCAB, VOCAB))
    own = np.random.default_rng(zlib.crc32(name.encode())).normal(size=(VOCAB, VOCAB))
    return softmax(2.0 * shared + 2.5 * own)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def validation_loss(model: dict[str, np.ndarray], truth: np.ndarray) -> float:
    """Cross-entropy of the model against a domain's process, previous symbols uniform."""
    log_p = np.log(softmax(model["emb"] @ model["unemb"] + model["bias"]))
    return float(-(truth * log_p).sum(axis=1).mean())


def batch(
    rng: np.random.Generator, weights: dict[str, float], cumulative: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """BATCH (previous, next) pairs, each domain contributing its share of the mixture."""
    counts = rng.multinomial(BATCH, list(weights.values()))
    prev, nxt = [], []
    for name, n in zip(weights, counts, strict=True):
        x = rng.integers(VOCAB, size=n)
        u = rng.random(n)
        prev.append(x)
        nxt.append((cumulative[name][x] < u[:, None]).sum(axis=1).clip(max=VOCAB - 1))
    return np.concatenate(prev), np.concatenate(nxt)


def train(weights: dict[str, float], params: int, tokens: int, seed: int, out: Path) -> None:
    rng = np.random.default_rng(seed)
    rank = int(np.clip(params // (2 * VOCAB), 1, VOCAB))
    languages = {name: language(name) for name in weights}
    cumulative = {name: t.cumsum(axis=1) for name, t in languages.items()}
    model = {
        "emb": rng.normal(scale=0.1, size=(VOCAB, rank)),
        "unemb": rng.normal(scale=0.1, size=(rank, VOCAB)),
        "bias": np.zeros(VOCAB),
    }
    moments = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in model.items()}
    steps = max(1, tokens // BATCH)
    evaluate_at = {max(1, round(steps * f)) for f in (0.25, 0.5, 1.0)}
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as results:
        for step in range(1, steps + 1):
            x, y = batch(rng, weights, cumulative)
            hidden = model["emb"][x]
            p = softmax(hidden @ model["unemb"] + model["bias"])
            p[np.arange(len(y)), y] -= 1.0
            d_logits = p / len(y)
            grads = {
                "unemb": hidden.T @ d_logits,
                "bias": d_logits.sum(axis=0),
                "emb": np.zeros_like(model["emb"]),
            }
            np.add.at(grads["emb"], x, d_logits @ model["unemb"].T)
            lr = LR * 0.5 * (1 + np.cos(np.pi * (step - 1) / steps))
            for k, g in grads.items():
                m, v = moments[k]
                m[:] = 0.9 * m + 0.1 * g
                v[:] = 0.999 * v + 0.001 * g * g
                m_hat, v_hat = m / (1 - 0.9**step), v / (1 - 0.999**step)
                model[k] -= lr * m_hat / (np.sqrt(v_hat) + 1e-8)
            if step in evaluate_at:
                losses = {f"loss.{n}": validation_loss(model, t) for n, t in languages.items()}
                line = {"tokens": step * BATCH, "metrics": losses}
                if step == steps:
                    line["info"] = {"rank": rank, "steps": steps}
                results.write(json.dumps(line) + "\n")
                results.flush()
                print(f"step {step}/{steps}: mean loss {np.mean(list(losses.values())):.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, help="the mixture, as a JSON object")
    p.add_argument("--params", type=int, required=True, help="model parameters")
    p.add_argument("--tokens", type=int, required=True, help="training tokens")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="results file (JSON lines)")
    args = p.parse_args()
    train(json.loads(args.weights), args.params, args.tokens, args.seed, args.out)


if __name__ == "__main__":
    main()
