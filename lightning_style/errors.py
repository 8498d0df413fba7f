"""The exceptions users see: bad input before a run, a run that went non-finite, results that could not be written.

Messages name settings as command-line flags (``--model.weights``). ``str(error)``, what a Python caller sees, turns
them into the arguments that caller passed (``StyleTransfer(weights=...)``); the command line prints
``error.command_line``.
"""

import re

_OWNERS = {"model": "StyleTransfer", "data": "PairDataModule", "trainer": "Trainer", "output": "ImageWriter",
           "images": "ImageLogger"}
_LITERALS = {"true": "True", "false": "False", "null": "None"}
_LEADING = re.compile(r"^--(\w+)\.(\w+) (?!(?:must|is|and|needs|has|cannot)\b)('[^']*'|[^\s:;,']+)")
_ADVICE = re.compile(r"\b(pass|use|give|needs) --(\w+)\.(\w+) (?!must|is|and|needs)([^\s,;)]+)")
_LITERAL = re.compile(r"--(\w+)\.(\w+) (true|false|null)\b")
_FLAG = re.compile(r"--(\w+)\.(\w+)")


def in_python_words(message: str) -> str:
    """``message`` with each ``--group.option`` flag named as the Python argument: ``Class(option=...)``, with
    the value where the message gives one as advice (``pass --model.backbone vgg16``)."""

    def owner(group: str) -> str | None:
        return _OWNERS.get(group)

    def advice(match: re.Match) -> str:
        verb, group, name, value = match.groups()
        if not owner(group):
            return match[0]
        value = _LITERALS.get(value, value if re.fullmatch(r"-?[\d.]+", value) else repr(value))
        return f"{verb} {owner(group)}({name}={value})"

    def leading(match: re.Match) -> str:  # "--trainer.precision 16-true would..." -> "Trainer(precision='16-true') would..."
        group, name, value = match.groups()
        if not owner(group):
            return match[0]
        quoted = value if value.startswith("'") else repr(value)
        value = _LITERALS.get(value, value if re.fullmatch(r"-?[\d.]+", value) else quoted)
        return f"{owner(group)}({name}={value})"

    message = _LEADING.sub(leading, message)
    message = _ADVICE.sub(advice, message)
    message = _LITERAL.sub(lambda m: f"{owner(m[1])}({m[2]}={_LITERALS[m[3]]})" if owner(m[1]) else m[0], message)
    return _FLAG.sub(lambda m: f"{owner(m[1])}({m[2]}=...)" if owner(m[1]) else m[0], message)


class _Worded(Exception):
    """A message written with command-line flags, shown to Python callers with their arguments' names."""

    @property
    def command_line(self) -> str:
        """The message as the command line prints it, with flags."""
        return super().__str__()

    def __str__(self) -> str:
        return in_python_words(super().__str__())


class StyleTransferError(_Worded, ValueError):
    """A bad input (path, image, option or weights file), raised before any optimisation starts.

    The message is one line that names the input and says what is wrong and how to fix it. The command line
    prints it without a traceback (set ``LIGHTNING_STYLE_DEBUG=1`` for one).
    """


class NonFiniteError(_Worded, RuntimeError):
    """The loss or an image became NaN or infinite during optimisation.

    Raised at the first check after it happened (``StyleTransfer(check_every_n_steps=...)``, each batch end, each
    checkpoint): the images are put back to those of the last good check, those of global step ``images_step``
    (``None`` when they are the batch's starting images, no result). They are written to disk if this run
    optimised them, and no checkpoint holds the bad values.
    """

    def __init__(self, message: str, images_step: int | None = None) -> None:
        super().__init__(message)
        self.images_step = images_step


class WriteError(_Worded, RuntimeError):
    """A result or a checkpoint could not be written (a full disk, a read-only folder): the run stopped, and the
    message names the file. The same command goes on: results on disk are kept, the pairs not written are redone."""
