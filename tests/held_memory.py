"""A callback for console-script runs in the tests: what the process still holds after each batch, counted exactly
(no allocator noise), so that a test can check that nothing grows with the number of pairs."""

import gc
import tracemalloc

import torch
from PIL import Image
from pytorch_lightning.callbacks import Callback


class HeldMemory(Callback):
    """After each finished batch: the bytes of every tensor Python can reach (each storage once), how many of them
    still hold an autograd graph (a graph keeps its saved activations alive out of sight), how many PIL images are
    alive, and the bytes that Python allocated since the first batch ended and still holds (``tracemalloc``:
    objects, strings, NumPy's arrays). ``after_batch`` holds one dict per batch; the latest instance is
    ``HeldMemory.latest`` (the command line builds it)."""

    latest: "HeldMemory | None" = None

    def __init__(self) -> None:
        self.after_batch: list[dict[str, int]] = []
        HeldMemory.latest = self

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if pl_module.result is None:  # the batch goes on
            return
        gc.collect()
        storages, graphs, pictures = {}, 0, 0
        for thing in gc.get_objects():
            if issubclass(type(thing), torch.Tensor):  # type(): isinstance would wake deprecated proxies
                storage = thing.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
                graphs += thing.grad_fn is not None
            elif issubclass(type(thing), Image.Image):
                pictures += 1
        python = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0
        self.after_batch.append({"tensor_bytes": sum(storages.values()), "graphs": graphs, "pictures": pictures,
                                 "python_bytes": python})
        tracemalloc.start()  # from the first batch's end: what the first batch sets up once is not growth

    def on_train_end(self, trainer, pl_module) -> None:
        tracemalloc.stop()
