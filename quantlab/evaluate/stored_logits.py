"""A main's next-token logits over a window, kept on disk so that the FP32 reference is scored once per text.

Every quantized variant is compared with FP32 position by position (KL, top-1), which needs FP32's whole distribution
at every position. Recomputing it cost one FP32 pass of the text per variant (~107 s for the 270M's 1,279 tokens on
this machine, about as long as scoring the variant itself). Instead, the first pass writes the logits into the
folder's `.reference-logits/` (float32 `.npy`, 1 MB per token for Gemma3's 262k vocabulary: 1.3 GB for the lab's
default text) and every later comparison reads them back memory-mapped: the same numbers, bit for bit.

A file is named by the variant and the sha256 of what decides the logits: the main's and its embedder's hashes (from
the manifest), LiteRT's version, and the window's token ids. A re-export or another text never reads stale logits;
writing a variant's logits removes that variant's files made from another main.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from quantlab import manifest
from quantlab.atomic import atomic_path
from quantlab.runtime.session import ArtifactSet

STORE_DIR = ".reference-logits"


class StoredLogits:
    """The store of one artifact set's main (its variant and embedder) in its folder."""

    def __init__(self, arts: ArtifactSet) -> None:
        self.dir = arts.folder / STORE_DIR
        self.variant = arts.variant
        main = arts.data.artifact(arts.variant).sha256
        emb = arts.data.artifact(arts.embedder_key).sha256
        self._main_tag = main[:16]
        self._ident = [main, emb, manifest.versions()["ai-edge-litert"]]

    def path(self, window: list[int]) -> Path:
        key = hashlib.sha256(json.dumps([*self._ident, list(map(int, window))]).encode()).hexdigest()[:24]
        return self.dir / f"{self.variant}-{self._main_tag}-{key}.npy"

    def has(self, window: list[int]) -> bool:
        return self.path(window).is_file()

    def read(self, window: list[int], rows: int) -> Iterator[np.ndarray]:
        """The stored logits in chunks of `rows` positions, as the scorer that wrote them yielded them."""
        mm = np.load(self.path(window), mmap_mode="r")
        for s in range(0, len(mm), rows):
            yield np.array(mm[s : s + rows])

    @contextlib.contextmanager
    def writer(self, window: list[int]) -> Iterator[Callable[[np.ndarray], None]]:
        """A function that takes the window's logits chunk by chunk; the file appears only once every position came
        (an interrupted pass leaves nothing)."""
        target = self.path(window)
        state: dict = {"at": 0}

        def put(chunk: np.ndarray) -> None:
            if "mm" not in state:
                state["mm"] = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                                        shape=(len(window), chunk.shape[-1]))
            state["mm"][state["at"] : state["at"] + len(chunk)] = chunk
            state["at"] += len(chunk)

        with atomic_path(target) as tmp:
            yield put
            if state["at"] != len(window):
                raise RuntimeError(f"{state['at']} of {len(window)} positions' logits were stored")
            state.pop("mm").flush()
        for old in self.dir.glob(f"{self.variant}-*.npy"):
            if not old.name.startswith(f"{self.variant}-{self._main_tag}-"):
                old.unlink(missing_ok=True)

