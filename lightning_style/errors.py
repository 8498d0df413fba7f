"""The exceptions users see: bad input before a run, and a run that went non-finite."""


class StyleTransferError(ValueError):
    """A bad input (path, image, option or weights file), raised before any optimisation starts.

    The message is one line that names the input and says what is wrong and how to fix it. The command line
    prints it without a traceback (set ``LIGHTNING_STYLE_DEBUG=1`` for one).
    """


class NonFiniteError(RuntimeError):
    """The loss or an image became NaN or infinite during optimisation.

    Raised at the step where it happens, before the bad values reach the images: the images keep their last good
    values (and are written to disk), and the last checkpoint is untouched.
    """


class WriteError(RuntimeError):
    """The run finished, but its images could not be written (a full disk); the final checkpoint holds them."""
