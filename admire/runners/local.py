"""Local runner: every trial trains a proxy model in its own subprocess, on GPU when present.

The corpus is prepared once per runner (tokenised domains are cached across studies); each
trial becomes a `ProxyTrialTask` (plain data) that writes a job file, runs
`python -m admire.proxy.train` in a new process group with a deadline, relays its progress
lines, and reads back its result file. The Ray runner runs the same task in a Ray worker. A
crash, a NaN, an out-of-memory kill or the timeout makes a failed trial with the reason; the
study goes on. `run` may be called from several threads at once.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from admire.config import Fidelity, ProxyRunnerConfig, StudyConfig
from admire.proxy.sizes import flops_per_token, shape_of
from admire.runners.base import PoolRow, TrialResult, TrialSpec, scratch_folder, scratch_name
from admire.runners.process import ProcessOutcome, run_process

# Runner settings that the training process takes as they are (TrainJob fields).
TRAIN_SETTINGS = {
    "seq_len",
    "batch_size",
    "lr",
    "warmup_fraction",
    "min_lr_ratio",
    "weight_decay",
    "eval_at",
    "eval_tokens",
    "device",
    "threads",
    "compile",
}


class LocalRunner:
    """Runs proxy-training trials as local subprocesses."""

    def __init__(self, config: ProxyRunnerConfig, domains: list[str]) -> None:
        self.config = config
        self.domains = domains
        self._corpus = None
        self._corpus_lock = threading.Lock()
        self.out = sys.stdout

    @classmethod
    def from_config(cls, config: StudyConfig) -> LocalRunner:
        assert isinstance(config.runner, ProxyRunnerConfig)
        return cls(config.runner, config.domain_names)

    @property
    def corpus(self):  # type: ignore[no-untyped-def]
        """The tokenised domains, prepared (or opened from the cache) on first use."""
        with self._corpus_lock:
            if self._corpus is None:
                from admire.proxy.corpus import prepare_corpus

                print("preparing corpus (tokenised domains are cached)", file=self.out, flush=True)
                self._corpus = prepare_corpus(
                    self.config,
                    self.domains,
                    log=lambda line: print(line, file=self.out, flush=True),
                )
            return self._corpus

    def check_data(self) -> None:
        """Refuse unreadable domain sources or tokenizer now (a ConfigError naming the field);
        reads what the corpus would read, writes nothing."""
        from admire.proxy.corpus import check_sources

        check_sources(self.config, self.domains)

    def metric_names(self) -> list[str]:
        return [f"loss.{d}" for d in self.domains]

    def pool(self) -> list[PoolRow] | None:
        return None

    def expected_cost(self, fidelity: Fidelity) -> float | None:
        """A FLOPs prior (head included); measured wall time replaces it once trials run."""
        vocab = self.config.tokenizer.vocab_size
        shape = shape_of(fidelity.model_size)
        return flops_per_token(shape, vocab, self.config.seq_len) * fidelity.tokens

    def reference(self, weights: dict[str, float], fidelity: Fidelity) -> dict[str, float] | None:
        return None

    def domain_caps(self, tokens: float) -> dict[str, float]:
        """Upper bounds on each domain's weight so that a run of `tokens` repeats no domain
        more than its `max_epochs` (its source's, else the runner's) times; domains with no
        cap are left out."""
        caps = {}
        for name, d in self.corpus.domains.items():
            source = self.config.sources.get(name)
            epochs = source.max_epochs if source is not None else None
            epochs = self.config.max_epochs if epochs is None else epochs
            if epochs is not None:
                caps[name] = min(1.0, epochs * d.train_tokens / tokens)
        return caps

    def job(self, spec: TrialSpec) -> dict:
        """The training job of a trial: its spec, the cached corpus, the runner's settings."""
        corpus = self.corpus
        settings = self.config.model_dump(include=TRAIN_SETTINGS)
        return settings | {
            "weights": spec.weights,
            "model_size": spec.fidelity.model_size,
            "tokens": int(spec.fidelity.tokens),
            "seed": spec.seed,
            "domains": {n: d.job_spec() for n, d in corpus.domains.items()},
            "vocab_size": corpus.vocab_size,
        }

    def task(self, spec: TrialSpec) -> ProxyTrialTask:
        """The trial as a task that runs anywhere the corpus cache is readable."""
        env_defaults = {}
        if self.config.device != "cuda" and self.config.threads:
            env_defaults["OMP_NUM_THREADS"] = str(self.config.threads)
        return ProxyTrialTask(
            index=spec.index,
            job=self.job(spec),
            manifest=self.corpus.manifest(),
            timeout_s=self.config.timeout_s,
            env_defaults=env_defaults,
            scratch=scratch_name(spec.index),
        )

    def run(self, spec: TrialSpec) -> TrialResult:
        return self.task(spec)()


@dataclass(frozen=True)
class ProxyTrialTask:
    """One proxy training as plain data: the job, the corpus manifest to tag it with, the
    deadline. Calling it runs `python -m admire.proxy.train` and reads back its result file."""

    index: int
    job: dict
    manifest: dict[str, str]
    timeout_s: float
    env_defaults: dict[str, str]
    """Environment variables for the training process unless the environment sets them."""
    scratch: str
    """Its scratch folder's name (`scratch_folder`)."""

    def __call__(self) -> TrialResult:
        with scratch_folder(self.scratch) as tmp:
            job_path, out_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
            job_path.write_text(json.dumps(self.job))
            proc = run_process(
                [sys.executable, "-m", "admire.proxy.train", str(job_path), str(out_path)],
                timeout_s=self.timeout_s,
                label=f"trial {self.index}",
                env=self.env_defaults | dict(os.environ),
            )
            if proc.timed_out:
                return self._failed(
                    proc, f"timed out after {self.timeout_s:g} s (runner.timeout_s)"
                )
            if not out_path.is_file():
                return self._failed(
                    proc, f"training process {proc.ended} and no result:\n{proc.tail}"
                )
            raw = json.loads(out_path.read_text())
        info = self.manifest | raw["info"] | {"wall_s_with_startup": f"{proc.elapsed:.2f}"}
        return TrialResult(
            metrics=raw["metrics"],
            cost=proc.elapsed,
            failed=raw["failed"],
            error=raw["error"] + (f"\n{proc.tail}" if raw["failed"] and proc.tail else ""),
            info=info,
            curve=[(int(p["tokens"]), p["metrics"]) for p in raw["curve"]],
            series={k: [(int(t), float(v)) for t, v in pts] for k, pts in raw["series"].items()},
        )

    def _failed(self, proc: ProcessOutcome, error: str) -> TrialResult:
        return TrialResult({}, proc.elapsed, failed=True, error=error, info=dict(self.manifest))
