"""Reading the Qualcomm plugin's log: coverage per subgraph and the exact reason each rejected op was rejected."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

_PARTITION = re.compile(
    r"Partitioned subgraph<(\d+)>, selected (\d+) ops, from a total of (\d+) ops\. resulted in (\d+) partitions")
_REJECTED = re.compile(r"LiteRT Op #(\d+) '(\w+)' \(code=\d+\) is not supported")
_QNN_FAIL = re.compile(r"QNN op validation failed: '([^']+)' \(type=(\w+)\)")
_QNN_DTYPE = re.compile(r"\[(\d)\] name=\"[^\"]*\" dtype=(QNN_DATATYPE_\w+) dims=(\[[^\]]*\])")
_QNN_ERR = re.compile(r"QNN error=(\d+)")
_E_LINE = re.compile(r"<E> (.+)")
_FATAL = re.compile(r"graph_prepare\.cc.*ERROR|could not create op|graph prepare failed|prepare failed")
_TENSOR = re.compile(r"\[(\d)\] name=\"([^\"]+)\"\s+tensor_idx")
# The Qualcomm plugin's own errors (e.g. "ERROR: [qnn_compose_graph.cc:320] Unsupported quantization type.") name the
# reason a whole compile failed; they carry neither "failed" nor a graph-prepare phrase.
_VENDOR = re.compile(r"ERROR: \[qnn_[a-z_]+\.cc:\d+\] *\S")


@dataclass
class RejectedOp:
    subgraph: int
    op_index: int
    op: str
    reason: str
    qnn_error: str
    qnn_io: list[str] = field(default_factory=list)
    tensors: list[str] = field(default_factory=list)
    signature: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SubgraphCoverage:
    subgraph: int
    ops_offloaded: int
    ops_total: int
    partitions: int


def parse_log(log: str) -> tuple[list[SubgraphCoverage], list[RejectedOp], list[str]]:
    """Coverage per subgraph, rejected ops (with the QNN validator's message), and the log's error lines."""
    coverage: list[SubgraphCoverage] = []
    rejected: list[RejectedOp] = []
    pending: list[RejectedOp] = []
    last_e, last_err, qnn_io = "", "", []
    lines = log.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        # The first <E> line of a block is the validator's sentence; later ones repeat it, list dtype sets, or are
        # glued to other streams' output, so keep the first one until the op it explains is reported.
        if not last_e and (m := _E_LINE.search(line)) and "Requested" not in m.group(1) \
                and "Supported" not in m.group(1) and "refer to" not in m.group(1):
            last_e = m.group(1).strip()
        if _QNN_FAIL.search(line):
            qnn_io = []
            j = i + 1
            while j < len(lines) and j < i + 12 and "QNN error" not in lines[j]:
                if d := _QNN_DTYPE.search(lines[j]):
                    qnn_io.append(f"{d.group(2).replace('QNN_DATATYPE_', '')}{d.group(3)}")
                j += 1
        if m := _QNN_ERR.search(line):
            last_err = m.group(1)
        if m := _REJECTED.search(line):
            tensors = []
            j = i + 1
            while j < len(lines) and j < i + 10 and not _REJECTED.search(lines[j]):
                if t := _TENSOR.search(lines[j]):
                    tensors.append(t.group(2))
                j += 1
            pending.append(RejectedOp(-1, int(m.group(1)), m.group(2), last_e, last_err, qnn_io, tensors))
        if m := _PARTITION.search(line):
            sg = int(m.group(1))
            coverage.append(SubgraphCoverage(sg, int(m.group(2)), int(m.group(3)), int(m.group(4))))
            for r in pending:
                r.subgraph = sg
            rejected.extend(pending)
            pending = []
        i += 1
    # The fatal messages (graph preparation) first, then the rest of the error lines.
    fatal = [ln.strip() for ln in lines if "ERROR" in ln and (_FATAL.search(ln) or _VENDOR.search(ln))]
    other = [ln.strip() for ln in lines if "ERROR" in ln and "failed" in ln.lower() and ln.strip() not in fatal]
    return coverage, rejected, fatal + other
