"""Named model sizes of the proxy GPT family (no torch needed, so configs can validate them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GPTShape:
    """Depth, width and heads of one named size."""

    n_layer: int
    d_model: int
    n_head: int

    @property
    def non_embedding_params(self) -> int:
        """Parameters outside the (tied) embedding: attention and MLP matrices plus norms."""
        d = self.d_model
        return self.n_layer * (12 * d * d + 2 * d) + d


MODEL_SIZES: dict[str, GPTShape] = {
    "0.1M": GPTShape(2, 64, 2),
    "0.5M": GPTShape(4, 96, 3),
    "1M": GPTShape(5, 128, 4),
    "3M": GPTShape(8, 176, 4),
    "10M": GPTShape(8, 320, 5),
    "30M": GPTShape(12, 448, 7),
    "100M": GPTShape(12, 832, 13),
    "300M": GPTShape(24, 1024, 16),
}


def shape_of(name: str) -> GPTShape:
    """The shape of a named size, with the known names in the error."""
    try:
        return MODEL_SIZES[name]
    except KeyError:
        raise KeyError(
            f"unknown model size {name!r}; known sizes: {', '.join(MODEL_SIZES)}"
        ) from None


def flops_per_token(shape: GPTShape, vocab_size: int, seq_len: int) -> float:
    """Training FLOPs per token: 6 x (non-embedding + output-head params) plus attention's
    6 x n_layer x seq_len x d_model (forward + backward). The head term matters: in the
    smallest models it is most of the compute."""
    n = shape.non_embedding_params + vocab_size * shape.d_model
    return 6.0 * n + 6.0 * shape.n_layer * seq_len * shape.d_model
