"""Mixture batches: each batch's sequences come from the domains in the proposed proportions.

Slots are allocated by largest running deficit (the cumulative form of largest-remainder
rounding): after n sequences, every domain has had round(w * n) of them to within one, at every
step of the run and not only in expectation, and a domain of weight 0 is never drawn. Each
sequence is a random window of a domain's training tokens; everything is determined by the seed.
"""

from __future__ import annotations

import numpy as np


class MixtureSampler:
    """Draws (batch_size, seq_len + 1) token windows from domains in fixed proportions."""

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        weights: dict[str, float],
        batch_size: int,
        seq_len: int,
        seed: int,
    ) -> None:
        self.names = [n for n in arrays if weights.get(n, 0.0) > 0.0]
        if not self.names:
            raise ValueError("the mixture gives no weight to any domain")
        total = sum(weights[n] for n in self.names)
        self.weights = np.array([weights[n] / total for n in self.names])
        self.arrays = [arrays[n] for n in self.names]
        for name, arr in zip(self.names, self.arrays, strict=True):
            if arr.size <= seq_len + 1:
                raise ValueError(
                    f"domain '{name}' has {arr.size} training tokens, fewer than one window "
                    f"of {seq_len + 1}"
                )
        self.batch_size, self.seq_len = batch_size, seq_len
        self.rng = np.random.default_rng(seed)
        self.drawn = np.zeros(len(self.names))
        self.slots = 0

    def allocate(self) -> np.ndarray:
        """How many sequences of the next batch each domain gets."""
        counts = np.zeros(len(self.names), dtype=np.int64)
        for _ in range(self.batch_size):
            self.slots += 1
            deficit = self.weights * self.slots - self.drawn
            i = int(np.argmax(deficit))
            self.drawn[i] += 1
            counts[i] += 1
        return counts

    def batch(self) -> np.ndarray:
        """The next batch of windows, as int64 token ids."""
        rows = []
        for arr, count in zip(self.arrays, self.allocate(), strict=True):
            if count:
                starts = self.rng.integers(0, arr.size - self.seq_len - 1, size=count)
                rows.extend(
                    np.asarray(arr[s : s + self.seq_len + 1], dtype=np.int64) for s in starts
                )
        return np.stack(rows)

    def counts(self) -> dict[str, int]:
        """Sequences drawn so far per domain."""
        return {n: int(c) for n, c in zip(self.names, self.drawn, strict=True)}
