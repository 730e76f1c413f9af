"""The QNN host libraries LiteRT's Qualcomm compiler plugin loads, found without the vendor SDK.

`ai-edge-litert-sdk-qualcomm` downloads the QNN SDK from the vendor at install time, which fails offline. The PyPI wheel
`onnxruntime-qnn` ships the host libraries the plugin needs (libQnnHtp, libQnnSystem, libQnnIr, libQnnSaver,
libHtpPrepare). The plugin also lists libQnnLpai.so as NEEDED without using a symbol from it, so quantlab builds an
empty stand-in once, with the system C compiler, into its cache folder. No binary is committed.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

from quantlab.cache import cache_dir
from quantlab.errors import UserError

REQUIRED = ("libQnnHtp.so", "libQnnSystem.so", "libQnnIr.so", "libQnnSaver.so", "libHtpPrepare.so")
INSTALL_HINT = "pip install onnxruntime-qnn==2.7.0 (quantlab's set-up installs it)"


def qnn_lib_dir() -> Path:
    """The folder holding the QNN host libraries; a missing library is a UserError saying how to install it."""
    spec = importlib.util.find_spec("onnxruntime_qnn")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the QNN host libraries are not installed; {INSTALL_HINT}")
    folder = Path(list(spec.submodule_search_locations)[0])
    missing = [lib for lib in REQUIRED if not (folder / lib).is_file()]
    if missing:
        raise UserError(f"{', '.join(missing)} missing from {folder}; {INSTALL_HINT}")
    return folder


def lpai_stub_dir() -> Path:
    """A folder with an empty libQnnLpai.so, built on first use."""
    folder = cache_dir("qnn-stub")
    stub = folder / "libQnnLpai.so"
    if stub.is_file():
        return folder
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise UserError("building the libQnnLpai.so stand-in needs a C compiler; install one (apt-get install gcc)")
    tmp = folder / ".libQnnLpai.so.tmp"
    subprocess.run([cc, "-shared", "-x", "c", "/dev/null", "-o", str(tmp)], check=True, capture_output=True)
    tmp.replace(stub)
    return folder


def library_path() -> str:
    """LD_LIBRARY_PATH entries for the plugin: the QNN libraries, then the stub."""
    return f"{qnn_lib_dir()}:{lpai_stub_dir()}"
