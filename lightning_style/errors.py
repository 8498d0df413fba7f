"""The exceptions users see: bad input before a run, a run that went non-finite, results that could not be written.

Each class words its errors in its own terms: a bad argument is an :class:`OptionError` that names the class, the
argument and the value (``VGGFeatures(pooling='average') must be 'max' or 'avg'``); the command line shows the flag
that fed that argument instead (``--model.pooling average must be 'max' or 'avg'``), from its parser.
"""

from typing import Any


class StyleTransferError(ValueError):
    """A bad input (path, image, option or weights file), raised before any optimisation starts.

    The message is one line that names the input and says what is wrong and how to fix it. The command line
    prints it without a traceback (set ``LIGHTNING_STYLE_DEBUG=1`` for one).
    """


class OptionError(StyleTransferError):
    """A bad argument: ``Owner(option=value) problem``.

    >>> str(OptionError("VGGFeatures", "pooling", "average", "must be 'max' or 'avg'"))
    "VGGFeatures(pooling='average') must be 'max' or 'avg'"
    >>> OptionError("VGGFeatures", "pooling", "average", "must be 'max' or 'avg'").as_flag("--model.pooling")
    "--model.pooling average must be 'max' or 'avg'"
    """

    def __init__(self, owner: str, option: str, value: Any, problem: str) -> None:
        self.owner, self.option, self.value, self.problem = owner, option, value, problem
        super().__init__(f"{owner}({option}={value!r}) {problem}")

    def as_flag(self, flag: str) -> str:
        """The message as the command line words it, ``flag`` standing for the argument."""
        return f"{flag} {_as_typed(self.value)} {self.problem}"


def _as_typed(value: Any) -> str:
    """A value as one types it on the command line: ``null``, ``true``, ``[a.png, b.png]``."""
    if isinstance(value, (bool, type(None))):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (list, tuple)):
        return f"[{', '.join(_as_typed(item) for item in value)}]"
    return str(value)


class NonFiniteError(RuntimeError):
    """The loss or an image became NaN or infinite during optimisation.

    Raised at the first check after it happened (``StyleTransfer(check_every_n_steps=...)``, each batch end, each
    checkpoint): the images are put back to those of the last good check, those of global step ``images_step``
    (``None`` when they are the batch's starting images, no result). They are written to disk if this run
    optimised them, and no checkpoint holds the bad values.
    """

    def __init__(self, message: str, images_step: int | None = None) -> None:
        super().__init__(message)
        self.images_step = images_step


class WriteError(RuntimeError):
    """A result or a checkpoint could not be written (a full disk, a read-only folder): the run stopped, and the
    message names the file. The same command goes on: results on disk are kept, the pairs not written are redone."""
