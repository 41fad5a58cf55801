"""Batches of uint8 images on the training device, from a split held there whole or streamed from the cache.

- :class:`DeviceData`: the split copied to the device once; a batch is an index into it (no copy per step).
- :class:`StreamedImages`: for a split over the device-memory budget. A background thread reads each batch
  from the memory-mapped cache into a pinned host buffer and copies it to the device without blocking, on
  a stream of its own, while the model computes on the batch before; a few batches are in flight.

Both give the same batches for the same order (:meth:`batches`), so a trial's result does not depend on
which one its budget chose. :func:`device_images` picks.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from nas_attn.data import ImageSet

#: batches read ahead by the streaming thread
DEPTH = 3
Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]
#: rows copied to the device per piece when a split is loaded whole (bounds the host memory it takes)
LOAD_ROWS_BYTES = 1 << 28


def batch_slices(n: int, batch_size: int, count: int | None = None, drop_last: bool = True) -> list[slice]:
    """Positions of ``count`` batches over ``n`` items taken in order, wrapping round (``None``: one pass).

    ``drop_last``: every batch full (training); otherwise the last one of a pass may be short (evaluation).
    """
    per_pass = n // batch_size if drop_last else -(-n // batch_size)
    per_pass = max(1, per_pass)
    count = per_pass if count is None else count
    return [slice((s % per_pass) * batch_size, min(n, (s % per_pass + 1) * batch_size)) for s in range(count)]


class DeviceData:
    """A split's uint8 images and labels, held on the device whole.

    Args:
        x: ``(N, C, H, W)`` uint8 images, or an :class:`~nas_attn.data.ImageSet` (read piece by piece, so
            a memory-mapped split never sits whole in host memory on its way to the device).
        y: labels (``None`` with an image set: its own).
    """

    def __init__(self, x: np.ndarray | ImageSet, y: np.ndarray | None, device: torch.device) -> None:
        images = x if isinstance(x, ImageSet) else ImageSet(x, np.asarray(y))
        self.device = device
        self.x = torch.empty((len(images), *images.image_shape), dtype=torch.uint8, device=device)
        row_bytes = max(1, int(np.prod(images.image_shape)))
        step = max(1, LOAD_ROWS_BYTES // row_bytes)
        for i in range(0, len(images), step):
            part = images.read(slice(i, i + step))
            self.x[i:i + len(part)].copy_(torch.from_numpy(part))
        self.y = torch.as_tensor(np.asarray(images.labels, np.int64)).to(device)

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, order: torch.Tensor | None, slices: Sequence[slice]) -> Batches:
        """``(images, labels)`` at ``order[s]`` for each slice ``s`` (``order`` ``None``: in order)."""
        order_dev = None if order is None else order.to(self.device)
        for s in slices:
            if order_dev is None:
                yield self.x[s], self.y[s]
            else:
                idx = order_dev[s]
                yield self.x[idx], self.y[idx]


@dataclass
class _Slot:
    """A batch's buffers: host (pinned on CUDA) and device (the same tensor on a CPU).

    ``used`` (CUDA only) is recorded on the consumer's stream when the model is done with ``dev``; it lives
    as long as the buffers, so that the first copy of a pass into ``dev`` also waits for the kernels the
    last pass queued on it.
    """

    host: torch.Tensor
    dev: torch.Tensor
    used: torch.cuda.Event | None


class StreamedImages:
    """A split read batch by batch from its memory-mapped images by a background thread (see the module).

    A batch handed out is valid until the next one is asked for (its buffer is then refilled). One pass at
    a time: the passes share the buffers, and each waits for the device work queued on them by the last.
    """

    def __init__(self, images: ImageSet, device: torch.device, depth: int = DEPTH) -> None:
        self.images, self.device, self.depth = images, device, depth
        self.y = torch.as_tensor(np.asarray(images.labels, np.int64)).to(device)
        self.cuda = device.type == "cuda"
        self._buffers: dict[int, list[_Slot]] = {}

    def __len__(self) -> int:
        return len(self.y)

    def _slots(self, batch_size: int) -> list[_Slot]:
        """``depth`` slots for batches of ``batch_size``, made once and kept across passes."""
        if batch_size not in self._buffers:
            shape = (batch_size, *self.images.image_shape)
            host = [torch.empty(shape, dtype=torch.uint8, pin_memory=self.cuda) for _ in range(self.depth)]
            self._buffers[batch_size] = [
                _Slot(h, torch.empty(shape, dtype=torch.uint8, device=self.device), torch.cuda.Event())
                if self.cuda else _Slot(h, h, None) for h in host]
        return self._buffers[batch_size]

    def batches(self, order: torch.Tensor | None, slices: Sequence[slice]) -> Batches:
        """``(images, labels)`` at ``order[s]`` for each slice ``s`` (``order`` ``None``: in order)."""
        if not slices:
            return
        order_np = None if order is None else order.cpu().numpy()
        order_dev = None if order is None else order.to(self.device)
        size = max(s.stop - s.start for s in slices)
        stream = _Stream(self, order_np, slices, self._slots(size))
        try:
            for s, (slot, n) in zip(slices, stream, strict=True):
                labels = self.y[s] if order_dev is None else self.y[order_dev[s]]
                yield stream.device_buffer(slot)[:n], labels
                stream.release(slot)
        finally:
            stream.close()


class _Stream:
    """One pass of :meth:`StreamedImages.batches`: the reading thread and the slots it fills.

    Slot life: free → the thread reads rows into its host buffer (after the previous copy out of it ended),
    queues the copy to its device buffer on the copy stream (after the model finished with that buffer: the
    slot's ``used`` event) → ready → handed out → released (``used`` recorded) → free. Closing records every
    ``used`` again, so that the next pass also waits for a batch handed out but never released.
    """

    def __init__(self, owner: StreamedImages, order: np.ndarray | None, slices: Sequence[slice],
                 slots: list[_Slot]) -> None:
        self.owner, self.order, self.slices, self.slots = owner, order, slices, slots
        self.cuda = owner.cuda
        self.free: queue.Queue[int] = queue.Queue()
        self.ready: queue.Queue[tuple[int, int] | BaseException] = queue.Queue()
        self.stop = threading.Event()
        for i in range(len(slots)):
            self.free.put(i)
        if self.cuda:
            self.copy_stream = torch.cuda.Stream(owner.device)
            # per pass: close() waits for every copy, so none of the last pass's is still reading a host buffer
            self.copied = [torch.cuda.Event() for _ in slots]
        self.thread = threading.Thread(target=self._read_all, name="nas-attn-stream", daemon=True)
        self.thread.start()

    def device_buffer(self, slot: int) -> torch.Tensor:
        return self.slots[slot].dev

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for _ in self.slices:
            item = self.ready.get()
            if isinstance(item, BaseException):
                raise item
            slot, n = item
            if self.cuda:
                torch.cuda.current_stream(self.owner.device).wait_event(self.copied[slot])
            yield slot, n

    def release(self, slot: int) -> None:
        self._mark_used(slot)
        self.free.put(slot)

    def _mark_used(self, slot: int) -> None:
        """CUDA: the slot's device buffer is free once the work queued so far on the consumer's stream ends."""
        used = self.slots[slot].used
        if used is not None:
            used.record(torch.cuda.current_stream(self.owner.device))

    def _read_all(self) -> None:
        try:
            for s in self.slices:
                slot = self.free.get()
                if self.stop.is_set():
                    return
                self._fill(slot, s)
        except BaseException as exc:  # handed to the consumer, which raises it
            self.ready.put(exc)

    def _fill(self, slot: int, s: slice) -> None:
        host, dev, used = self.slots[slot].host, self.slots[slot].dev, self.slots[slot].used
        n = s.stop - s.start
        positions = np.arange(s.start, s.stop) if self.order is None else self.order[s]
        if self.cuda:
            self.copied[slot].synchronize()  # the host buffer's previous copy to the device has ended
        self.owner.images.read(positions, out=host[:n].numpy())
        if self.cuda:
            with torch.cuda.stream(self.copy_stream):
                self.copy_stream.wait_event(used)  # the model is done with the device buffer
                dev[:n].copy_(host[:n], non_blocking=True)
                self.copied[slot].record(self.copy_stream)
        self.ready.put((slot, n))

    def close(self) -> None:
        """Stop the thread (also when the consumer stopped early), leaving no copy in flight."""
        self.stop.set()
        for i in range(len(self.slots)):
            self.free.put(i)
        self.thread.join()
        if self.cuda:
            self.copy_stream.synchronize()
            for i in range(len(self.slots)):
                self._mark_used(i)


DeviceImages = DeviceData | StreamedImages


def device_images(images: ImageSet, device: torch.device, budget: int) -> tuple[DeviceImages, int]:
    """The split held on the device if it fits ``budget`` bytes, else streamed; and the budget left."""
    if images.nbytes <= budget:
        return DeviceData(images, None, device), budget - images.nbytes
    return StreamedImages(images, device), budget


def default_memory_budget(device: torch.device, share: float = 1.0) -> int:
    """Bytes of images a trial may hold on ``device``: half of its ``share`` of the memory free now.

    CUDA: ``torch.cuda.mem_get_info`` (free on the whole GPU, so a trial packed with others takes only
    its share). CPU: the host memory available (``MemAvailable``) times ``share``. The other half is left
    to the model's activations and to the other processes.
    """
    share = min(1.0, max(share, 1e-3))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
    else:
        free = _available_host_memory()
    return int(free * share * 0.5)


def _available_host_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
