"""The neural networks: plain torch modules, no Pyro.

- :class:`FingerprintNet`: packed Morgan bits -> Linear -> activation -> residual MLP layers -> a ``2h``
  embedding, with a head for the log matrix effect and, when no pose network takes that role, one for the
  log target effect; optionally a head of per-compound zero-inflation gate logits (as DEL-Compose).
- :class:`PoseNet`: every docked pose's features through an encoder of the same shape, plus the fingerprint
  embedding, post-add residual layers, then pooling over poses (gated attention or mean) and a head for the
  log target effect. The attention weights are returned for inspection.

Every output is in natural-log units, ``[batch]``. The networks are point estimates: the model registers
them with ``pyro.module``, so their weights live in the model's parameter store.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from delpyro.features import unpack_bits

__all__ = [
    "ACTIVATIONS",
    "POOLINGS",
    "FingerprintNet",
    "FingerprintOutput",
    "GatedAttention",
    "PoseNet",
    "ResidualEncoder",
    "ResidualLayer",
]

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU, "tanh": nn.Tanh}
POOLINGS = ("gated_attention", "mean")


class ResidualLayer(nn.Module):
    """x + Dropout(act(Linear(h -> 2h)(Dropout(act(Linear(2h -> h)(x)))))), on a ``2h`` vector."""

    def __init__(self, hidden_size: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(2 * hidden_size, hidden_size),
            ACTIVATIONS[activation](),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, 2 * hidden_size),
            ACTIVATIONS[activation](),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class ResidualEncoder(nn.Module):
    """Linear(n_inputs -> 2h) -> activation -> ``n_layers`` residual layers: ``[..., n_inputs] -> [..., 2h]``."""

    def __init__(self, n_inputs: int, hidden_size: int, n_layers: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.input = nn.Sequential(nn.Linear(n_inputs, 2 * hidden_size), ACTIVATIONS[activation]())
        self.residual = nn.Sequential(*(ResidualLayer(hidden_size, activation, dropout) for _ in range(n_layers)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(self.input(x))


class GatedAttention(nn.Module):
    """Gated attention pooling over poses: score_k = w . (tanh(V x_k) * sigmoid(U x_k)), softmax over k.

    ``forward(x [batch, n_poses, d]) -> (pooled [batch, d], weights [batch, n_poses])``.
    """

    def __init__(self, n_inputs: int, attention_size: int) -> None:
        super().__init__()
        self.value = nn.Linear(n_inputs, attention_size)
        self.gate = nn.Linear(n_inputs, attention_size)
        self.score = nn.Linear(attention_size, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.score(torch.tanh(self.value(x)) * torch.sigmoid(self.gate(x))).squeeze(-1)
        weights = torch.softmax(scores, dim=-1)
        return (weights.unsqueeze(-1) * x).sum(-2), weights


class FingerprintOutput(NamedTuple):
    """What :class:`FingerprintNet` gives for a batch (None: no such head)."""

    #: ``[batch, 2h]``, which the pose network adds to every pose's embedding
    embedding: torch.Tensor
    #: log target and log matrix effects ``[batch]``
    target: torch.Tensor | None
    matrix: torch.Tensor | None
    #: per-compound zero-inflation gate logits ``[batch]``, by arm ("control", "target")
    gate_logits: dict[str, torch.Tensor]
    #: a model of several targets: each target's deviation from the shared target effect ``[batch, n]``
    deviations: torch.Tensor | None = None


class FingerprintNet(nn.Module):
    """Packed Morgan bits ``[batch, n_bits // 8]`` -> a ``2h`` embedding -> heads (see :class:`FingerprintOutput`).

    Args:
        n_bits: fingerprint length; hidden_size: h; n_layers: residual layers after the input layer.
        target_head, matrix_head: whether to give those effects (the pose network gives the target effect
            when there are poses; a screen without controls has no matrix arm).
        gate_arms: arms that get a per-compound gate logit head ("control", "target"), or none.
        deviation_heads: for a model of several targets, their number: a head of each target's deviation
            from the shared target head (0: one target).
    """

    def __init__(
        self,
        n_bits: int,
        hidden_size: int,
        n_layers: int,
        activation: str,
        dropout: float,
        *,
        target_head: bool,
        matrix_head: bool,
        gate_arms: tuple[str, ...] = (),
        deviation_heads: int = 0,
    ) -> None:
        super().__init__()
        self.n_bits = n_bits
        self.encoder = ResidualEncoder(n_bits, hidden_size, n_layers, activation, dropout)
        self.target_head = nn.Linear(2 * hidden_size, 1) if target_head else None
        self.matrix_head = nn.Linear(2 * hidden_size, 1) if matrix_head else None
        self.gate_arms = gate_arms
        self.gate_head = nn.Linear(2 * hidden_size, len(gate_arms)) if gate_arms else None
        self.deviation_head = nn.Linear(2 * hidden_size, deviation_heads) if deviation_heads else None

    def forward(self, packed_bits: torch.Tensor) -> FingerprintOutput:
        embedding = self.encoder(unpack_bits(packed_bits, self.n_bits))
        gate_logits = {}
        if self.gate_head is not None:
            logits = self.gate_head(embedding)
            gate_logits = {arm: logits[..., j] for j, arm in enumerate(self.gate_arms)}
        return FingerprintOutput(
            embedding=embedding,
            target=None if self.target_head is None else self.target_head(embedding).squeeze(-1),
            matrix=None if self.matrix_head is None else self.matrix_head(embedding).squeeze(-1),
            gate_logits=gate_logits,
            deviations=None if self.deviation_head is None else self.deviation_head(embedding),
        )


class PoseNet(nn.Module):
    """Docked poses ``[batch, n_poses, n_pose_features]`` (float16 is cast to float32) -> encoder (+ the
    fingerprint embedding, when given) -> post-add residual layers -> pooling -> log target effect.

    ``forward`` returns ``(log target effect [batch], attention weights [batch, n_poses])``; mean pooling
    gives uniform weights.
    """

    def __init__(
        self,
        n_pose_features: int,
        hidden_size: int,
        n_layers: int,
        n_post_layers: int,
        activation: str,
        dropout: float,
        pooling: str,
        attention_size: int,
    ) -> None:
        super().__init__()
        self.encoder = ResidualEncoder(n_pose_features, hidden_size, n_layers, activation, dropout)
        self.post = nn.Sequential(*(ResidualLayer(hidden_size, activation, dropout) for _ in range(n_post_layers)))
        self.attention = GatedAttention(2 * hidden_size, attention_size) if pooling == "gated_attention" else None
        self.target_head = nn.Linear(2 * hidden_size, 1)

    def forward(
        self, poses: torch.Tensor, fingerprint_embedding: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        embedded = self.encoder(poses.float())
        if fingerprint_embedding is not None:
            embedded = embedded + fingerprint_embedding.unsqueeze(-2)
        embedded = self.post(embedded)
        if self.attention is None:
            weights = torch.full(embedded.shape[:-1], 1.0 / embedded.shape[-2], device=embedded.device)
            pooled = embedded.mean(-2)
        else:
            pooled, weights = self.attention(embedded)
        return self.target_head(pooled).squeeze(-1), weights
