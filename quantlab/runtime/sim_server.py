"""A compiled main's QNN graphs held open on the HTP simulator in one long-lived child process, called as the CPU
main is.

`htp_sim.run` opens the simulator once per batch of independent samples (a spot check). Generation cannot batch: each
decode call needs the token the previous one chose. `SimMain` loads the graphs of the signatures it is given once, in a
child process, and answers `run(sig, values, raw, raw_outputs)` with the same contract as `LiteRTModel.run`, so the
host pipeline (`runtime/session.py`: chunking, caches, sampling) drives the simulated NPU exactly as it drives the CPU
interpreter. Choose it (`generate --backend htp-sim`) to read what the NPU would write, not for speed: ~1 s per tiny
decode call, 10-18 s on the 270M.

The child writes the simulator's own log to a file, not to the console; if the simulator dies (a segfault in its worker
threads is how it fails), the call raises `SimCrash` naming the graph, the signature and the SoC, with the log's tail.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from quantlab.runtime.htp_sim import SimCrash, SimGraph, graphs


class SimMain:
    """The graphs of `signatures` of the compiled main `path` (compiled without weight sharing) on the simulator.

    Use as a context manager; `timeout` bounds the session load and each call (seconds)."""

    def __init__(self, path: Path, signatures: list[str], soc: str = "?", timeout: float = 1800) -> None:
        found = graphs(Path(path))
        missing = [s for s in signatures if s not in found]
        if missing:
            raise SimCrash(f"{path} has no compiled graph for {', '.join(missing)} (compiled signatures: "
                           f"{', '.join(found) or 'none'})")
        self.path, self.soc, self.timeout = Path(path), soc, timeout
        self.graphs = {s: found[s] for s in signatures}
        self.seconds: list[float] = []  # simulator time of each call, as the child measured it
        fd, self._log = tempfile.mkstemp(prefix="quantlab-htpsim-", suffix=".log")
        os.close(fd)
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked LiteRT or torch state
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(str(self.path), {s: asdict(g) for s, g in self.graphs.items()},
                                                      child, self._log), daemon=True)
        self._proc.start()
        child.close()
        self.session_load_s = self._answer("loading graph(s) " + ", ".join(f"{g.name} ({s})"
                                                                          for s, g in self.graphs.items()))

    def run(self, sig: str, values: dict[str, np.ndarray], raw: dict[str, np.ndarray] | None = None,
            raw_outputs: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
        """As `LiteRTModel.run`: float `values` are quantized with each input's own parameters, `raw` (caches in the
        model's dtype) pass as they are; outputs in `raw_outputs` come back in the model's dtype, the rest as float."""
        g, given = self.graphs[sig], {**values, **(raw or {})}
        self._conn.send((sig, {t.name: t.quantize(given[t.key]) for t in g.inputs}))
        outs, secs = self._answer(f"graph {g.name} ({sig})")
        self.seconds.append(secs)
        return {t.key: outs[t.name] if t.key in raw_outputs else t.dequantize(outs[t.name]) for t in g.outputs}

    def _answer(self, what: str):
        if not self._conn.poll(self.timeout):
            self.close()
            raise SimCrash(f"{what} timed out after {self.timeout:.0f} s on SoC {self.soc}", self._tail())
        try:
            kind, payload = self._conn.recv()
        except (EOFError, ConnectionError):
            self._proc.join(10)
            code = self._proc.exitcode
            how = (f"signal {-code} ({signal.Signals(-code).name})" if code is not None and code < 0
                   else f"exit code {code}")
            raise SimCrash(f"{what} crashed on SoC {self.soc} ({how})", self._tail()) from None
        if kind == "error":
            raise SimCrash(f"{what} failed on SoC {self.soc}: {payload}", self._tail())
        return payload

    def _tail(self) -> str:
        try:
            return Path(self._log).read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def close(self) -> None:
        if self._proc.is_alive():
            try:
                self._conn.send(None)
            except (OSError, BrokenPipeError):
                pass
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
        self._conn.close()
        Path(self._log).unlink(missing_ok=True)

    def __enter__(self) -> "SimMain":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _serve(model: str, graph_dicts: dict, conn, log: str) -> None:
    """The child: the simulator's output to `log`, one onnxruntime session per graph, then calls until told to stop."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    from quantlab.runtime.htp_sim import open_session

    try:
        t0 = time.perf_counter()
        sessions, contexts = {}, {}  # prefill and decode usually sit in one context: read it once
        for sig, d in graph_dicts.items():
            g = SimGraph.from_dict(d)
            key = (g.offset, g.size)
            if key not in contexts:
                contexts[key] = g.context(model)
            sessions[sig] = (g, open_session(g, contexts[key]))
        contexts.clear()
        conn.send(("ok", time.perf_counter() - t0))
    except Exception as exc:  # noqa: BLE001  (reported to the parent as a simulator failure)
        conn.send(("error", f"{type(exc).__name__}: {_first_line(exc)}"))
        return
    while (msg := conn.recv()) is not None:
        sig, feeds = msg
        g, sess = sessions[sig]
        names = [t.name for t in g.outputs]
        t1 = time.perf_counter()
        try:
            res = sess.run(names, feeds)
        except Exception as exc:  # noqa: BLE001  (an onnxruntime error: reported, the child stays up)
            conn.send(("error", f"{type(exc).__name__}: {_first_line(exc)}"))
            continue
        conn.send(("ok", (dict(zip(names, res)), time.perf_counter() - t1)))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
