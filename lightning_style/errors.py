"""The one exception type users see for bad input."""


class StyleTransferError(ValueError):
    """A bad input (path, image, option or weights file), raised before any optimisation starts.

    The message is one line that names the input and says what is wrong and how to fix it. The command line
    prints it without a traceback (set ``LIGHTNING_STYLE_DEBUG=1`` for one).
    """
