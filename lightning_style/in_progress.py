"""A batch in progress as a checkpoint holds it, and the checks that come before any of it is used.

A checkpoint is data from outside: its names are only compared with the batch that the plan gives (never used as
file names), its tensors' shapes and sizes are checked against that batch before anything is allocated, and no
class or callable is taken from it.
"""

import inspect
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from lightning_fabric.utilities.apply_func import move_data_to_device
from lightning_utilities.core.rank_zero import rank_zero_warn
from torch import Tensor

from .errors import StyleTransferError


def qualified_name(obj: Any) -> str:
    """``torch.optim.adam.Adam`` for an Adam optimiser."""
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def optimizer_identity(optimizer: torch.optim.Optimizer) -> dict:
    """The optimiser's class and the arguments it was given that differ from its class's defaults: what makes its
    steps what they are, and stays the same when a torch release adds an argument with a default."""
    signature = inspect.signature(type(optimizer).__init__).parameters.values()
    defaults = {p.name: p.default for p in signature if p.default is not inspect.Parameter.empty}
    given = {key: value for key, value in optimizer.defaults.items()
             if key not in defaults or str(defaults[key]) != str(value)}
    return {"class": qualified_name(optimizer), **given}


def pack(names: tuple[str, ...], step: int, images: Tensor, optimizer: torch.optim.Optimizer | None,
         plateau: dict) -> dict:
    """This process's batch in progress after ``step`` of its steps (on the CPU); ``{"names": []}`` for none."""
    if not names:
        return {"names": []}
    state = move_data_to_device(optimizer.state_dict(), torch.device("cpu")) if optimizer else {}
    return {"names": list(names), "step": step, "images": images.detach().cpu(), "plateau": plateau,
            "optimizer_class": qualified_name(optimizer), "optimizer": state}


def gather(entry: dict, trainer) -> list:
    """Every process's ``entry``, in rank order (a checkpoint holds them all: each process resumes its own)."""
    if trainer.world_size == 1 or not (dist.is_available() and dist.is_initialized()):
        return [entry]
    entries = [None] * trainer.world_size
    dist.all_gather_object(entries, entry)
    return entries


def unpack(entry: Any, where: str, names: tuple[str, ...], step: int, shape: torch.Size,
           optimizer: torch.optim.Optimizer) -> tuple[Tensor, dict | None, dict]:
    """Check a checkpoint's ``entry`` against the batch that goes on (its pairs ``names`` after ``step`` steps,
    images of ``shape``), then return fresh copies of its images, its optimiser state (``None``, with one warning,
    when it was made by another optimiser than ``optimizer``) and its plateau state.

    Raises:
        StyleTransferError: ``<where>: malformed checkpoint field in_progress.<field> (...)``.
    """
    def bad(field: str, problem: str) -> StyleTransferError:
        return StyleTransferError(f"{where}: malformed checkpoint field in_progress.{field} ({problem})")

    saved = entry.get("names") if isinstance(entry, dict) else None
    if isinstance(saved, list) and set(names) < set(saved) and entry.get("step") == step:
        missing = ", ".join(sorted(set(saved) - set(names)))
        raise StyleTransferError(f"{where}: {missing} of the batch in progress could not be decoded now (see the "
                                 "warning above): mend the file, or run the same command without --ckpt_path (the "
                                 "batch starts again)")
    if saved != list(names) or entry.get("step") != step:
        raise bad("names", f"not the batch in progress that the checkpoint's plan gives ({', '.join(names)}, "
                           f"step {step})")
    images = entry.get("images")
    if not isinstance(images, Tensor) or images.dtype != torch.float32 or images.shape != shape:
        found = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
        raise bad("images", f"{found}, where this batch's images are float32 {tuple(shape)}")
    if not torch.isfinite(images).all():
        raise bad("images", "NaN or infinite values")
    plateau = entry.get("plateau")
    if not (isinstance(plateau, dict) and isinstance(plateau.get("history"), list)
            and all(isinstance(item, (list, tuple)) and len(item) == 2 for item in plateau["history"])
            and (plateau.get("stopped_at") is None or isinstance(plateau["stopped_at"], int))):
        raise bad("plateau", "not a plateau state")
    if entry.get("optimizer_class") != qualified_name(optimizer):
        rank_zero_warn(f"{where}: the batch in progress was optimised with {entry.get('optimizer_class')}, this run "
                       f"uses {qualified_name(optimizer)}: its optimiser state starts afresh")
        return images.clone(memory_format=torch.contiguous_format), None, plateau
    state = entry.get("optimizer")
    if not isinstance(state, dict):
        raise bad("optimizer", "not an optimiser state")
    # A legitimate state holds scalars and tensors of the images' size: one per moment (Adam), a few per history
    # entry (L-BFGS), as the images' shape or flat. Checked before anything is copied.
    tensors = list(_tensors(state))
    if any(tensor.numel() != 1 and tensor.shape not in (images.shape, (images.numel(),)) for tensor in tensors):
        raise bad("optimizer", f"a tensor of another shape than the batch's images {tuple(images.shape)}")
    budget = images.numel() * (2 * optimizer.defaults.get("history_size", 0) + 4) + 1000
    if sum(tensor.numel() for tensor in tensors) > budget:
        raise bad("optimizer", "larger than this batch's images allow")
    return images.clone(memory_format=torch.contiguous_format), _cloned(state), plateau


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict, where: str) -> None:
    """``optimizer.load_state_dict(state)``, with one line for a state that does not fit the optimiser. Its
    arguments (learning rate...) stay this run's: torch would take the checkpoint's."""
    arguments = [{key: value for key, value in group.items() if key != "params"} for group in optimizer.param_groups]
    try:
        optimizer.load_state_dict(state)
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as error:
        problem = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StyleTransferError(f"{where}: malformed checkpoint field in_progress.optimizer ({problem})") from None
    for group, given in zip(optimizer.param_groups, arguments, strict=True):
        group.update(given)


def check_plan_state(state: dict, where: str) -> tuple[list[list[str]], int]:
    """The batches in progress (each process's pair names) and the steps they had, from the data module's part of
    a checkpoint; one line for a malformed field."""
    def bad(field: str, problem: str) -> StyleTransferError:
        name = f"PairDataModule.{field}" if field else "PairDataModule"
        return StyleTransferError(f"{where}: malformed checkpoint field {name} ({problem})")

    if not isinstance(state, dict):
        raise bad("", "not a dict")
    for field in ("world", "steps", "within"):
        if not isinstance(state.get(field), int) or isinstance(state[field], bool):
            raise bad(field, f"not a whole number: {str(state.get(field))[:40]!r}")
    if state["world"] < 1 or state["steps"] < 1:
        raise bad("world" if state["world"] < 1 else "steps", "below 1")
    batches, inputs, settings = state.get("batches"), state.get("inputs"), state.get("settings")
    if not isinstance(batches, list) or not all(isinstance(names, list) and all(isinstance(n, str) for n in names)
                                                for names in batches):
        raise bad("batches", "not a list of lists of pair names")
    if not isinstance(inputs, dict) or not all(isinstance(value, dict) for value in inputs.values()):
        raise bad("inputs", "not a mapping of pair names to their inputs")
    if not isinstance(settings, dict):
        raise bad("settings", "not a mapping of options")
    if batches and not 0 < state["within"] < state["steps"]:
        raise bad("within", f"{state['within']} is not between 0 and steps ({state['steps']}), exclusive")
    if batches and len(batches) != state["world"]:
        raise bad("batches", f"{len(batches)} processes' batches, but world is {state['world']}")
    names = [name for names in batches for name in names]
    if len(set(names)) < len(names):
        raise bad("batches", "a pair is in two batches")
    return batches, state["within"]


def _tensors(value: Any) -> Iterator[Tensor]:
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def _cloned(value: Any) -> Any:
    """``value`` with every tensor copied into memory of its own (a tensor read from a file may share one element
    among many positions: strides of 0, which an optimiser's in-place update refuses)."""
    if isinstance(value, Tensor):
        return value.clone(memory_format=torch.contiguous_format)
    if isinstance(value, dict):
        return {key: _cloned(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cloned(item) for item in value)
    return value
