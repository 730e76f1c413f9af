"""Accumulators for perplexity, KL divergence and top-1 agreement, overall and by position in the window."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Position buckets for "is quality the same late in the cache as early?" (quantized RoPE or cache ranges fail late).
BUCKET = 128


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


@dataclass
class Accumulator:
    """Per scored position: NLL of the true next token; with a reference: KL(ref || test), top-1 agreement."""

    nll: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    agree: list[bool] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    max_abs_logit_diff: float = 0.0

    def add(self, logits: np.ndarray, targets: np.ndarray, positions: np.ndarray, ref: np.ndarray | None) -> None:
        """`logits[i]` predicts `targets[i]` at window position `positions[i]`; `ref` is the reference's logits."""
        lp = log_softmax(logits)
        self.nll.extend((-lp[np.arange(len(targets)), targets]).tolist())
        self.positions.extend(positions.tolist())
        if ref is not None:
            lr = log_softmax(ref)
            self.kl.extend((np.exp(lr) * (lr - lp)).sum(-1).tolist())
            self.agree.extend((logits.argmax(-1) == ref.argmax(-1)).tolist())
            self.max_abs_logit_diff = max(self.max_abs_logit_diff, float(np.abs(logits - ref).max()))

    def add_log_probs(self, log_probs: np.ndarray, positions: np.ndarray) -> None:
        """Scores that arrive as the true tokens' log-probabilities (a runtime that returns no distributions)."""
        self.nll.extend((-np.asarray(log_probs, np.float64)).tolist())
        self.positions.extend(np.asarray(positions).tolist())

    def summary(self) -> dict:
        nll = np.asarray(self.nll)
        out = {"tokens_scored": int(nll.size), "perplexity": float(np.exp(nll.mean())) if nll.size else float("nan")}
        if self.kl:
            out["kl"] = float(np.mean(self.kl))
            out["top1_agreement"] = float(np.mean(self.agree))
            out["max_abs_logit_diff"] = self.max_abs_logit_diff
        out["by_position"] = self._by_position()
        return out

    def _by_position(self) -> list[dict]:
        pos = np.asarray(self.positions)
        rows = []
        for start in range(0, int(pos.max()) + 1 if pos.size else 0, BUCKET):
            sel = (pos >= start) & (pos < start + BUCKET)
            if not sel.any():
                continue
            row = {"from": start, "to": start + BUCKET - 1, "perplexity": float(np.exp(np.asarray(self.nll)[sel].mean()))}
            if self.kl:
                row["kl"] = float(np.asarray(self.kl)[sel].mean())
                row["top1_agreement"] = float(np.asarray(self.agree)[sel].mean())
            rows.append(row)
        return rows
