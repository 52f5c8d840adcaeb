"""A small GPT family with named sizes, from ~0.1M to ~300M non-embedding parameters.

Pre-norm blocks (RMSNorm), rotary positions, `scaled_dot_product_attention` (flash/efficient
kernels on GPU), a 4x GELU MLP, no biases and an output head tied to the token embedding.
The size names are what a study's `fidelities.model_sizes` refer to.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from admire.proxy.sizes import GPTShape


def _rotary(seq_len: int, head_dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim))
    angles = torch.outer(torch.arange(seq_len, device=device).float(), inv)
    return angles.cos(), angles.sin()


def _apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2).type_as(x)


class Block(nn.Module):
    def __init__(self, shape: GPTShape) -> None:
        super().__init__()
        d = shape.d_model
        self.n_head = shape.n_head
        self.norm1 = nn.RMSNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.norm2 = nn.RMSNorm(d)
        self.up = nn.Linear(d, 4 * d, bias=False)
        self.down = nn.Linear(4 * d, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in (q, k, v))
        q, k = _apply_rotary(q, cos, sin), _apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class GPT(nn.Module):
    """Decoder-only LM. `forward(idx, targets)` returns the mean next-token cross-entropy."""

    def __init__(self, shape: GPTShape, vocab_size: int, seq_len: int) -> None:
        super().__init__()
        if shape.d_model % shape.n_head or (shape.d_model // shape.n_head) % 2:
            raise ValueError(f"{shape}: head dim must be an even divisor of d_model")
        self.shape, self.seq_len = shape, seq_len
        self.embed = nn.Embedding(vocab_size, shape.d_model)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.n_layer))
        self.norm = nn.RMSNorm(shape.d_model)
        cos, sin = _rotary(seq_len, shape.d_model // shape.n_head, torch.device("cpu"))
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.apply(self._init)
        # GPT-2's scaled init of residual projections keeps the residual stream's variance
        # independent of depth.
        for block in self.blocks:
            for lin in (block.proj, block.down):
                nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * shape.n_layer))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x, self.cos[:t], self.sin[:t])
        logits = self.norm(x) @ self.embed.weight.T
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))

    def non_embedding_params(self) -> int:
        return sum(p.numel() for p in self.parameters()) - self.embed.weight.numel()
