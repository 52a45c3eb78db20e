"""Measure the bytes of live tensor storages on any device, the CPU included, where no allocator statistics exist.

``LiveBytes`` is a ``TorchDispatchMode``: every ATen operator call while it is active passes through it, and every
storage an operator returns is recorded once (keyed by the storage's Python object, which torch preserves for as long
as the storage lives) with a weakref callback that subtracts its bytes when the storage is freed. The running total is
then exactly "bytes of storages that ATen allocated and that are still alive", and ``peak`` its high-water mark.

Why this and not the process's RSS or malloc statistics: those include the Python heap, glibc arenas and freed memory
the allocator keeps, and they move with other processes' pressure; the dispatch count moves only with tensors, which is
what a GPU's ``torch.cuda.max_memory_allocated`` counts too (that one also rounds every block up to 512 bytes, which
is noise at the sizes planned here).

What it cannot see, and how callers deal with it: storages made before the mode was entered (``track`` registers
existing tensors, e.g. the model's parameters and the input batch), and memory made outside ATen (numpy arrays viewed
with ``torch.from_numpy``; register the batch). Autograd's backward runs operators through the dispatcher on the
thread that called ``backward`` (CPU) with the mode stack propagated, so gradients and saved tensors are seen.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class LiveBytes(TorchDispatchMode):
    """Running total and peak of live storage bytes; ``mark()`` starts a new peak window.

    with LiveBytes() as live:
        live.track(model.parameters())
        ...                              # anything
        live.mark()
        step()
        print(live.peak - live.at_mark)  # the step's own high-water mark above what lived before it
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self.at_mark = 0
        self._sizes: dict[int, int] = {}  # id of a live storage object -> bytes counted for it
        self._refs: dict[int, weakref.ref] = {}

    # --- bookkeeping ------------------------------------------------------------------------------------------------
    def _add_storage(self, storage: torch.UntypedStorage) -> None:
        if storage.device.type == "meta":
            return
        key = id(storage)
        nbytes = storage.nbytes()
        old = self._sizes.get(key)
        if old is None:
            self._refs[key] = weakref.ref(storage, self._freed(key))
            self._sizes[key] = nbytes
            self.current += nbytes
        elif old != nbytes:  # resized in place (out= ops, ZeRO-3's partitioned parameters)
            self._sizes[key] = nbytes
            self.current += nbytes - old
        if self.current > self.peak:
            self.peak = self.current

    def _freed(self, key: int):
        def callback(_ref) -> None:
            self.current -= self._sizes.pop(key, 0)
            self._refs.pop(key, None)

        return callback

    def track(self, tensors) -> None:
        """Count tensors that exist already (made before the mode was entered, or outside ATen)."""
        for t in tensors:
            if isinstance(t, torch.Tensor):
                self._add_storage(t.untyped_storage())

    def mark(self) -> None:
        """Start a new window: ``peak`` restarts from what is alive now, remembered as ``at_mark``."""
        self.at_mark = self.current
        self.peak = self.current

    # --- the dispatch hook ------------------------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._add_storage(t.untyped_storage())
        # in-place and out= operators may grow a storage they were handed
        if func._schema.is_mutable:
            for t in tree_leaves((args, kwargs or {})):
                if isinstance(t, torch.Tensor) and id(t.untyped_storage()) in self._sizes:
                    self._add_storage(t.untyped_storage())
        return out
