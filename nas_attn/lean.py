"""What a process of this project leaves out when it can never run a GPU kernel: Triton.

``torchvision.ops`` imports ``torch._dynamo``, which imports Triton whenever it is installed
(``torch.utils._triton.has_triton_package``); every process that builds one of this project's models (a trial
worker, the driver counting FLOPs) loaded Triton's 96 MB library and its Python modules for nothing. Measured
on the 2-core development machine (2026-12-07, torch 2.14.1): ``import torch, torch._dynamo`` peaks at 883 MB
resident with Triton, 781 MB without. Triton only runs the kernels that ``torch.compile`` generates for a GPU;
on a CPU ``torch.compile`` generates C++ and never touches it.

Marking the module absent (``None`` in :data:`sys.modules`, which Python documents as "the import raises
ImportError") makes torch take its own no-Triton path, the one it takes where Triton is not installed.

- :func:`leave_out_triton_without_gpu` is called by every ``nas-attn`` command: on a machine with no GPU
  device it sets :data:`ENV` to ``1``, so that the Ray workers a local search starts (which inherit the
  driver's environment) do the same when they import ``nas_attn``.
- ``NAS_ATTN_NO_TRITON=0`` keeps Triton anywhere; ``=1`` on a cluster's ``ray start`` leaves it out there.
"""

from __future__ import annotations

import glob
import logging
import os
import sys

#: ``1``: importing :mod:`nas_attn` leaves Triton out of this process (``0`` or unset: it does not)
ENV = "NAS_ATTN_NO_TRITON"


def leave_out_triton_if_asked() -> bool:
    """Leave Triton out of this process when :data:`ENV` is ``1``; whether it is out now."""
    if os.environ.get(ENV) == "1" and "triton" not in sys.modules:  # one imported already cannot be unloaded
        sys.modules["triton"] = None
        # torch's FLOP counter says, once, that it cannot count Triton kernels: there are none to count here
        logging.getLogger("torch.utils.flop_counter").addFilter(_NoTritonNotice())
    return "triton" in sys.modules and sys.modules["triton"] is None


class _NoTritonNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("triton not found")


def leave_out_triton_without_gpu() -> bool:
    """On a machine that shows no GPU device, ask for Triton to be left out here and in the processes this one
    starts (a value of :data:`ENV` the user set is kept); whether it is out of this process now."""
    if not gpu_device_files():
        os.environ.setdefault(ENV, "1")
    return leave_out_triton_if_asked()


#: device files through which a GPU may be reached: CUDA, ROCm, WSL 2's GPU, a DRM render node (Intel's XPU,
#: whose torch.compile kernels are Triton's too). Any of them keeps Triton: wrongly kept, it costs 100 MB;
#: wrongly left out, it would break torch.compile on a GPU.
GPU_DEVICE_PATTERNS = ("/dev/nvidia[0-9]*", "/dev/kfd", "/dev/dxg", "/dev/dri/renderD*")


def gpu_device_files() -> list[str]:
    """The device files of :data:`GPU_DEVICE_PATTERNS` this machine has.

    Read from ``/dev`` because importing torch to ask it costs seconds and loads the very libraries this module
    keeps out; a GPU hidden by ``CUDA_VISIBLE_DEVICES`` still counts (a trial may be given it by Ray).
    """
    return sorted(path for pattern in GPU_DEVICE_PATTERNS for path in glob.glob(pattern))
