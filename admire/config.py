"""Study configuration: the pydantic models behind `studies/NAME.yaml`.

Every field is validated up front, before anything touches the tracking store, so a bad file
costs one clear message and leaves nothing half-written.
"""

from __future__ import annotations

import fnmatch
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
DOMAIN_NAME_MAX = 200
# Parts of letters (any script), digits, `_ . -`, joined by single slashes: the shape of dataset
# names such as `allenai/tulu-3-sft-personas-math`. `weight.<domain>` and `loss.<domain>` become
# MLflow keys, which must not change under path normalisation (no `//`, `.` or `..` parts).
_DOMAIN_NAME = re.compile(r"\w[\w.-]*(?:/\w[\w.-]*)*")


class ConfigError(ValueError):
    """A study file that cannot be used; the message names the file, the field and the fix."""


def _not_bool(value: Any) -> Any:
    # pydantic reads YAML's `true` as 1 for a number; a boolean where a number belongs is a slip.
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got a boolean ({str(value).lower()})")
    return value


NO_BOOL = BeforeValidator(_not_bool)


def _domain_name(name: str) -> str:
    if len(name) > DOMAIN_NAME_MAX or not _DOMAIN_NAME.fullmatch(name):
        raise ValueError(
            f"'{name[:80]}' is not a domain name: use letters, digits, '_', '.', '-', and '/' "
            f"between parts, starting with a letter or digit, up to {DOMAIN_NAME_MAX} characters"
        )
    return name


DomainName = Annotated[str, AfterValidator(_domain_name)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Domain(_Strict):
    """One data domain and the share of the mixture it may take."""

    name: DomainName
    min: Annotated[float, NO_BOOL, Field(ge=0.0, le=1.0)] = 0.0
    max: Annotated[float, NO_BOOL, Field(ge=0.0, le=1.0)] = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> Domain:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max})")
        return self


class Objective(_Strict):
    """Which metrics make the objective, and how they are combined into one number.

    `metrics` takes metric names or shell-style patterns (`loss.*`); `aggregate` is `mean`
    (default), `sum` or `weighted` (then `weights` maps each metric to its weight).
    """

    metrics: list[str] = Field(min_length=1)
    aggregate: Literal["mean", "sum", "weighted"] = "mean"
    weights: dict[str, Annotated[float, NO_BOOL]] | None = None
    direction: Literal["minimize", "maximize"] = "minimize"

    @field_validator("metrics", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _weights_match(self) -> Objective:
        if self.aggregate == "weighted":
            if not self.weights:
                raise ValueError("aggregate 'weighted' needs `weights: {metric: weight}`")
            if any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
                raise ValueError("weights must be non-negative with a positive sum")
        elif self.weights is not None:
            raise ValueError("`weights` is only used with aggregate: weighted")
        return self

    def resolve(self, available: list[str]) -> list[str]:
        """The concrete metric names this objective reads, in a fixed order."""
        chosen: list[str] = []
        for pattern in self.metrics:
            hits = [m for m in available if fnmatch.fnmatchcase(m, pattern)]
            if not hits:
                raise ConfigError(
                    f"objective.metrics: '{pattern}' matches no metric; available: "
                    + ", ".join(available)
                )
            chosen.extend(h for h in hits if h not in chosen)
        if self.weights is not None:
            missing = sorted(set(self.weights) - set(chosen))
            if missing:
                raise ConfigError(f"objective.weights: {missing} are not among {chosen}")
        return chosen

    def combine(self, values: dict[str, float], metrics: list[str]) -> float:
        """Aggregate per-metric values into the objective (in the metrics' own direction)."""
        xs = [values[m] for m in metrics]
        if self.aggregate == "sum":
            return float(math.fsum(xs))
        if self.aggregate == "weighted":
            assert self.weights is not None
            ws = [self.weights.get(m, 0.0) for m in metrics]
            return float(math.fsum(w * x for w, x in zip(ws, xs, strict=True)) / math.fsum(ws))
        return float(math.fsum(xs) / len(xs))


class Fidelity(_Strict):
    """A model size (by name) trained on a number of tokens."""

    model_size: str
    tokens: Annotated[float, NO_BOOL, Field(gt=0)]


class Fidelities(_Strict):
    """The fidelities a study may run, and the target one it optimises for.

    `model_sizes` maps a size name to its parameter count. `pairs` lists the (size, tokens)
    combinations that may be run; without it every size is combined with every token budget.
    """

    model_sizes: dict[str, Annotated[float, NO_BOOL, Field(gt=0)]] = Field(min_length=1)
    tokens: list[Annotated[float, NO_BOOL, Field(gt=0)]] = Field(default_factory=list)
    pairs: list[Fidelity] | None = None
    target: Fidelity

    @field_validator("pairs", mode="before")
    @classmethod
    def _pairs_from_lists(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        pairs = []
        for i, p in enumerate(value):
            if isinstance(p, list | tuple):
                if len(p) != 2:
                    raise ValueError(f"pairs[{i}]: {p!r} is not a [model_size, tokens] pair")
                p = {"model_size": p[0], "tokens": p[1]}
            pairs.append(p)
        return pairs

    @model_validator(mode="after")
    def _consistent(self) -> Fidelities:
        sizes = list(self.model_sizes)
        if self.pairs is None and not self.tokens:
            raise ValueError("give `tokens` (crossed with every model size) or explicit `pairs`")
        for where, fid in [("target", self.target), *(("pairs", p) for p in self.pairs or [])]:
            if fid.model_size not in self.model_sizes:
                raise ValueError(f"{where}: model_size '{fid.model_size}' is not one of {sizes}")
        if self.target not in self.grid():
            raise ValueError(
                f"target ({self.target.model_size}, {self.target.tokens:g} tokens) is not "
                "among the runnable fidelities"
            )
        return self

    def grid(self) -> list[Fidelity]:
        """Every runnable fidelity, cheapest-looking (params x tokens) first."""
        if self.pairs is not None:
            fids = list(dict.fromkeys(self.pairs))
        else:
            fids = [Fidelity(model_size=s, tokens=t) for s in self.model_sizes for t in self.tokens]
        return sorted(fids, key=lambda f: self.model_sizes[f.model_size] * f.tokens)

    def params(self, fid: Fidelity) -> float:
        return self.model_sizes[fid.model_size]


class Budget(_Strict):
    """When a study stops: after `max_trials` trials or `max_cost` target-run units, first hit;
    or early, when its trials keep failing: more than `max_failure_rate` of the trials run in
    one call failed (checked once 5 have failed, like Ax's tolerated failure rate; 1 never
    stops), or `max_consecutive_failures` failed in a row (null: no such limit)."""

    max_trials: Annotated[int, NO_BOOL, Field(gt=0)] | None = None
    max_cost: Annotated[float, NO_BOOL, Field(gt=0)] | None = None
    max_failure_rate: Annotated[float, NO_BOOL, Field(gt=0, le=1)] = 0.5
    max_consecutive_failures: Annotated[int, NO_BOOL, Field(ge=1)] | None = 5

    @model_validator(mode="after")
    def _some_limit(self) -> Budget:
        if self.max_trials is None and self.max_cost is None:
            raise ValueError("set max_trials, max_cost or both")
        return self


class _RunnerBase(_Strict):
    workers: Annotated[int, NO_BOOL, Field(ge=1, le=4096)] | Literal["auto"] = 1
    """Trials run at once (`auto`: one per visible GPU, else one per `threads` CPU cores)."""
    max_retries: Annotated[int, NO_BOOL, Field(ge=0, le=100)] = 1
    """Times a failed trial is run again, each as a new trial with the same spec."""
    retry_new_seed: bool = False
    """Give a retried trial the seed of its own index instead of the failed trial's seed."""


class ReplayRunnerConfig(_RunnerBase):
    """Answer trials from a table of released runs (see README, "Run tables").

    `table` is `regmix-pile` (shipped) or a path to a CSV. In `pool` mode the optimiser picks
    among the table's not-yet-used runs; in `continuous` mode it proposes any mixture and a GP
    fitted to the table at that fidelity answers with its posterior mean.
    """

    kind: Literal["replay"]
    table: str = "regmix-pile"
    mode: Literal["pool", "continuous"] = "pool"


class DomainSource(_Strict):
    """Where one domain's data come from: a `builtin` domain of the embedded corpus, or a
    `path` to text (a folder of `.txt`/`.md` files, a `.jsonl` file, a Hugging Face dataset
    folder written by `save_to_disk`, a `.parquet` file or a folder of them; the text is in
    `text_field`) or to tokens already made (a nanoGPT-style `.bin` file of `dtype`, a `.npy`
    array, or a folder holding `train.bin`/`val.bin` or `train.npy`/`val.npy`, used as they
    are; or the `ids_field` column of a tokenised saved dataset or Parquet, copied once into
    the cache, never tokenised again). `split` picks the split of a saved `DatasetDict`."""

    builtin: str | None = None
    path: str | None = None
    text_field: str = "text"
    dtype: Literal["uint16", "uint32"] = "uint16"
    """Token ids' type in a `.bin` file (nanoGPT writes uint16); `.npy` files carry theirs."""
    split: str | None = None
    ids_field: str | None = None
    """A column of token ids (e.g. `input_ids`) of a saved dataset or Parquet files: the
    domain is those ids (the tokenizer they were made with gives the vocabulary), not
    `text_field` tokenised by the study."""
    max_epochs: Annotated[float, NO_BOOL, Field(gt=0)] | None = None
    """This domain's cap on passes over its training tokens in a target-fidelity run, in
    place of the runner's `max_epochs` (e.g. 4 for a small curated source, 1 for web text)."""

    @model_validator(mode="after")
    def _one_source(self) -> DomainSource:
        if (self.builtin is None) == (self.path is None):
            raise ValueError("give exactly one of `builtin: NAME` or `path: FOLDER_OR_JSONL`")
        return self


class TokenizerConfig(_Strict):
    """Byte-level BPE trained on a sample of every domain (`sample_mb` per domain), or the
    tokenizer JSON `file` the user names (a `tokenizers` file; nothing is downloaded). A study
    that mixes pre-tokenised and text domains needs the `file` its tokens were made with."""

    vocab_size: Annotated[int, NO_BOOL, Field(ge=260, le=1 << 20)] = 2048
    """The BPE's vocabulary; with only pre-tokenised domains and no `file`, the vocabulary
    size of their tokens (ids must be below it)."""
    sample_mb: Annotated[float, NO_BOOL, Field(gt=0)] = 1.0
    file: str | None = None


class ProxyRunnerConfig(_RunnerBase):
    """Train a small GPT per trial on the proposed mixture (see README, "Proxy training").

    Domains not named in `sources` are read from the embedded corpus under their own name.
    `eval_at` are the fractions of the token budget at which every domain's validation loss is
    measured (on `eval_tokens` held-out tokens per domain); the last must be 1.
    """

    kind: Literal["proxy"]
    sources: dict[str, DomainSource] = Field(default_factory=dict)
    max_mb_per_domain: Annotated[float, NO_BOOL, Field(gt=0)] = 4.0
    val_fraction: Annotated[float, NO_BOOL, Field(gt=0, lt=0.5)] = 0.1
    tokenizer: TokenizerConfig = TokenizerConfig()
    seq_len: Annotated[int, NO_BOOL, Field(ge=8, le=8192)] = 256
    batch_size: Annotated[int, NO_BOOL, Field(ge=1)] = 4
    lr: Annotated[float, NO_BOOL, Field(gt=0)] | None = None
    """Peak learning rate; by default 2e-3 x sqrt(128 / d_model) of the model size."""
    warmup_fraction: Annotated[float, NO_BOOL, Field(ge=0, lt=1)] = 0.05
    min_lr_ratio: Annotated[float, NO_BOOL, Field(ge=0, le=1)] = 0.1
    weight_decay: Annotated[float, NO_BOOL, Field(ge=0)] = 0.1
    eval_at: list[Annotated[float, NO_BOOL, Field(gt=0, le=1)]] = Field(
        default_factory=lambda: [0.125, 0.25, 0.5, 1.0], min_length=1
    )
    eval_tokens: Annotated[int, NO_BOOL, Field(ge=64)] = 8192
    max_epochs: Annotated[float, NO_BOOL, Field(gt=0)] | None = None
    """Cap on passes over any domain's training tokens in a target-fidelity run; it bounds
    each domain's weight by its size."""
    timeout_s: Annotated[float, NO_BOOL, Field(gt=0)] = 3600.0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Annotated[int, NO_BOOL, Field(ge=1)] = 1
    compile: Literal["auto", "on", "off"] = "auto"
    """torch.compile: `auto` compiles on GPU only (on CPU the cold compile costs more than
    it saves at proxy scale)."""
    cache_dir: str | None = None
    """Where tokenised domains and tokenizers are cached; default $ADMIRE_CACHE or
    ~/.cache/admire."""

    @field_validator("sources", mode="before")
    @classmethod
    def _paths_as_sources(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"path": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("eval_at")
    @classmethod
    def _ends_at_one(cls, value: list[float]) -> list[float]:
        value = sorted(set(value))
        if value[-1] != 1.0:
            raise ValueError("the last evaluation point must be 1 (the end of the run)")
        return value


COMMAND_PLACEHOLDERS = (
    "python",
    "trial_json",
    "weights_json",
    "model_size",
    "params",
    "tokens",
    "seed",
    "index",
    "out_dir",
    "results",
    "run_id",
)
"""What `{name}` in a command runner's command, `env` values and `results` path stands for
(README, "Your own trainer"). `${NAME}` is left alone for the shell."""
PLACEHOLDER = re.compile(r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _known_placeholders(text: str, known: tuple[str, ...]) -> None:
    unknown = [m for m in PLACEHOLDER.findall(text) if m not in known]
    if unknown:
        raise ValueError(
            f"unknown placeholder {{{unknown[0]}}} in {text!r}; known: "
            + ", ".join(f"{{{k}}}" for k in known)
        )


class CommandRunnerConfig(_RunnerBase):
    """Run the user's own training command per trial (see README, "Your own trainer").

    `command` is a list of arguments, or one string split like a shell line (`shell: true`
    runs it with /bin/sh instead). Placeholders (`COMMAND_PLACEHOLDERS`) are replaced per
    trial; the same values are in ADMIRE_* environment variables and the trial JSON file.
    `results` is the file (under the trial's `{out_dir}`) the command writes its metrics to,
    `.jsonl` or `.json`, or `mlflow` to read them from the MLflow run the command was handed.
    `metrics` names what it reports: names, with `{domain}` standing for each domain.
    """

    kind: Literal["command"]
    command: str | list[str]
    shell: bool = False
    metrics: list[str] = Field(default_factory=lambda: ["loss.{domain}"], min_length=1)
    results: str = "metrics.jsonl"
    cwd: str = "."
    """Working folder of the command, relative to the study file."""
    env: dict[str, str] = Field(default_factory=dict)
    out_dir: str | None = None
    """Folder under which each trial gets `trial-NNNN/` (kept); default a temporary folder per
    trial, deleted once its results are read."""
    timeout_s: Annotated[float, Field(gt=0)] = 3600.0

    @field_validator("metrics", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("command")
    @classmethod
    def _placeholders(cls, value: str | list[str]) -> str | list[str]:
        parts = [value] if isinstance(value, str) else value
        if not parts or not any(p.strip() for p in parts):
            raise ValueError("the command is empty")
        for part in parts:
            _known_placeholders(part, COMMAND_PLACEHOLDERS)
        return value

    @field_validator("env")
    @classmethod
    def _env_placeholders(cls, value: dict[str, str]) -> dict[str, str]:
        for text in value.values():
            _known_placeholders(text, COMMAND_PLACEHOLDERS)
        return value

    @field_validator("results")
    @classmethod
    def _results_file(cls, value: str) -> str:
        if value == "mlflow":
            return value
        if not value.endswith((".json", ".jsonl")):
            raise ValueError(f"got {value!r}; give a .jsonl or .json file name, or `mlflow`")
        _known_placeholders(value, ("index", "seed", "model_size", "tokens"))
        return value

    @field_validator("metrics")
    @classmethod
    def _metric_patterns(cls, value: list[str]) -> list[str]:
        for name in value:
            _known_placeholders(name, ("domain",))
        return value

    def metric_names(self, domains: list[str]) -> list[str]:
        """The concrete metric names, `{domain}` expanded to every domain in order."""
        names: list[str] = []
        for pattern in self.metrics:
            expanded = [pattern.replace("{domain}", d) for d in domains]
            names.extend(n for n in expanded if n not in names)
        return names


class RayRunnerConfig(_RunnerBase):
    """Run each trial as a Ray task (see README, "Many trials at once: Ray").

    `trial` is the runner each task runs (`proxy` or `command`, configured as on its own);
    `address` is the cluster to join (`auto`, `ray://HOST:10001`), or null for a local Ray
    started on demand with `local_cpus` CPUs. Each task asks for `num_cpus` and `num_gpus`, so
    Ray runs as many trials at once as the resources allow.
    """

    kind: Literal["ray"]
    trial: Annotated[ProxyRunnerConfig | CommandRunnerConfig, Field(discriminator="kind")]
    address: str | None = None
    num_cpus: Annotated[float, Field(ge=0)] = 1.0
    num_gpus: Annotated[float, Field(ge=0)] = 0.0
    local_cpus: Annotated[int, Field(ge=1)] | None = None
    retries: Annotated[int, Field(ge=0)] = 1
    """Times Ray runs a trial again when its worker or node died (not when the trial failed)."""
    runtime_env: dict[str, Any] | None = None
    """Passed to `ray.init` as is, e.g. `{working_dir: ., pip: [...]}` for a cluster."""

    @model_validator(mode="after")
    def _local_only(self) -> RayRunnerConfig:
        if self.address is not None and self.local_cpus is not None:
            raise ValueError("local_cpus sizes a local Ray; with an `address` Ray is not local")
        return self


RunnerConfig = Annotated[
    ReplayRunnerConfig | ProxyRunnerConfig | CommandRunnerConfig | RayRunnerConfig,
    Field(discriminator="kind"),
]


class OptimizerConfig(BaseModel):
    """Which optimiser proposes the trials (`kind`, default `admire`) and its own settings.

    The other fields are the chosen optimiser's options (e.g. `n_initial` for `admire`),
    validated against it: see `admire.optim` for the kinds and their options.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: str = "admire"

    @model_validator(mode="after")
    def _known_kind_and_options(self) -> OptimizerConfig:
        from admire.optim import OPTIMIZERS, optimizer_class

        if self.kind not in OPTIMIZERS:
            raise ValueError(f"kind: got {self.kind!r}; allowed: {', '.join(OPTIMIZERS)}")
        cls = optimizer_class(self.kind)
        try:
            cls.Options.model_validate(self.options)
        except ValidationError as err:
            e = err.errors()[0]
            where = ".".join(str(p) for p in e["loc"])
            msg = "unknown option (a typo?)" if e["type"] == "extra_forbidden" else e["msg"]
            known = ", ".join(cls.Options.model_fields) or "none"
            # A leading "." makes the reported field `optimizer.<option>` (see _format_error).
            raise ValueError(f".{where}: {msg} (options of {self.kind!r}: {known})") from None
        return self

    @property
    def options(self) -> dict[str, Any]:
        """The optimiser's own settings (every field but `kind`)."""
        return dict(self.model_extra or {})


class StudyConfig(_Strict):
    """A whole study: what to mix, what to optimise, at which fidelities, within what budget."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str = ""
    seed: Annotated[int, NO_BOOL, Field(ge=0)] = 0
    domains: list[Domain] = Field(min_length=2)
    objective: Objective
    fidelities: Fidelities
    budget: Budget
    runner: RunnerConfig
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)

    @field_validator("domains", mode="before")
    @classmethod
    def _names_or_mappings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": d} if isinstance(d, str) else d for d in value]
        return value

    @model_validator(mode="before")
    @classmethod
    def _named_model_sizes(cls, data: Any) -> Any:
        """Proxy studies may list model sizes by name; their parameter counts come from the
        model family."""
        if not isinstance(data, dict) or not isinstance(data.get("runner"), dict):
            return data
        runner = data["runner"]
        if runner.get("kind") == "ray" and isinstance(runner.get("trial"), dict):
            runner = runner["trial"]
        fids = data.get("fidelities")
        if runner.get("kind") != "proxy" or not isinstance(fids, dict):
            return data
        sizes = fids.get("model_sizes")
        if isinstance(sizes, list) and all(isinstance(s, str) for s in sizes):
            from admire.proxy.sizes import MODEL_SIZES

            unknown = [s for s in sizes if s not in MODEL_SIZES]
            if unknown:
                raise ValueError(
                    f"fidelities.model_sizes: {unknown} are not model sizes; known: "
                    + ", ".join(MODEL_SIZES)
                )
            data = {
                **data,
                "fidelities": {
                    **fids,
                    "model_sizes": {s: MODEL_SIZES[s].non_embedding_params for s in sizes},
                },
            }
        return data

    @model_validator(mode="after")
    def _proxy_domains(self) -> StudyConfig:
        runner = self.trial_runner
        if not isinstance(runner, ProxyRunnerConfig):
            return self
        from admire.proxy.default_corpus import BUILTIN_DOMAINS
        from admire.proxy.sizes import MODEL_SIZES

        unknown = [s for s in self.fidelities.model_sizes if s not in MODEL_SIZES]
        if unknown:
            raise ValueError(
                f"fidelities.model_sizes: {unknown} are not model sizes of the proxy family; "
                f"known: {', '.join(MODEL_SIZES)}"
            )
        names = [d.name for d in self.domains]
        extra = sorted(set(runner.sources) - set(names))
        if extra:
            raise ValueError(f"runner.sources: {extra} are not among the study's domains")
        for name in names:
            src = runner.sources.get(name)
            builtin = name if src is None else src.builtin
            if builtin is not None and builtin not in BUILTIN_DOMAINS:
                raise ValueError(
                    f"domain '{name}' has no source: add `runner.sources.{name}: PATH` or use "
                    f"a builtin domain ({', '.join(BUILTIN_DOMAINS)})"
                )
        return self

    @model_validator(mode="after")
    def _feasible_simplex(self) -> StudyConfig:
        names = [d.name for d in self.domains]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"domains: {dupes} appear more than once")
        lo = math.fsum(d.min for d in self.domains)
        hi = math.fsum(d.max for d in self.domains)
        if lo > 1.0 + 1e-12 or hi < 1.0 - 1e-12:
            raise ValueError(
                f"domains: no mixture fits the bounds (mins sum to {lo:g}, maxes to {hi:g}; "
                "a mixture sums to 1)"
            )
        return self

    @model_validator(mode="after")
    def _initial_design_fits(self, info: ValidationInfo) -> StudyConfig:
        # A stored config lists every default; it was checked when its study was created.
        if info.context and info.context.get("stored"):
            return self
        cap = self.budget.max_trials
        n_initial = self.optimizer.options.get("n_initial")
        if cap is not None and isinstance(n_initial, int) and n_initial > cap:
            raise ValueError(
                f"optimizer.n_initial ({n_initial}) is larger than budget.max_trials ({cap}): "
                "the study would end inside its initial design"
            )
        return self

    @property
    def trial_runner(self) -> ReplayRunnerConfig | ProxyRunnerConfig | CommandRunnerConfig:
        """The runner that answers each trial: `runner`, or the one a Ray runner runs."""
        return self.runner.trial if isinstance(self.runner, RayRunnerConfig) else self.runner

    @property
    def domain_names(self) -> list[str]:
        return [d.name for d in self.domains]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _format_error(source: str, err: ValidationError) -> str:
    """One line for one problem; a header and a line per problem otherwise."""
    problems = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "literal_error" and "expected" in e.get("ctx", {}):
            msg = f"got {e['input']!r}; allowed: {e['ctx']['expected']}"
        elif e["type"] == "extra_forbidden":
            msg = "unknown field (a typo?)"
        elif e["type"] == "union_tag_invalid":
            msg = f"got {e['ctx']['tag']!r}; allowed: {e['ctx']['expected_tags']}"
        elif e["type"] != "value_error" and isinstance(e.get("input"), str | int | float):
            msg = f"{msg} (got {e['input']!r})"
        # Whole-config checks have no location; their messages name the fields themselves.
        if msg.startswith("."):  # a sub-field's problem found by its parent's validator
            problems.append(f"{loc}{msg}")
        else:
            problems.append(f"{loc}: {msg}" if loc else msg)
    if len(problems) == 1:
        return f"{source}: invalid study config: {problems[0]}"
    return "\n  ".join([f"{source}: invalid study config", *problems])


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            # `<<: *anchor` merges are meant to be overridden by the keys next to them.
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = self.construct_object(key_node)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise ConfigError(f"line {line}: duplicate key '{key}' (give each key once)")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text, refusing duplicate keys; errors are one line naming the position."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from None


def parse_config(data: Any, source: str = "<config>", *, stored: bool = False) -> StudyConfig:
    """Validate a mapping as a StudyConfig, raising ConfigError with every problem listed.
    `stored`: the config of an existing study, read back from the tracking store."""
    if data is None:
        raise ConfigError(f"{source}: the study file is empty")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping (name: ..., domains: ...) at the top level, "
            f"got a {type(data).__name__}"
        )
    try:
        return StudyConfig.model_validate(data, context={"stored": stored})
    except ValidationError as err:
        raise ConfigError(_format_error(source, err)) from None


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate `studies/NAME.yaml` (UTF-8 YAML, each key once)."""
    path = Path(path)
    if not path.is_file():
        studies = sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        hint = f" (studies here: {', '.join(studies)})" if studies else ""
        raise ConfigError(f"{path}: no such study file{hint}")
    return parse_config(parse_yaml(read_utf8(path), str(path)), str(path))


def read_utf8(path: Path) -> str:
    """A text file's contents, refusing bytes that are not UTF-8 (never replacing them)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} on line {line}); "
            "save it as UTF-8"
        ) from None
