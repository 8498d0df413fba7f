"""Lightning's output that a user of this package cannot act on, left out once :mod:`lightning_style` is imported:
adverts for other products (its "💡 Tip" lines) and a deprecation warning about Lightning's own call into torch.
Nothing else of Lightning's output is touched, for this package's runs or any other."""

import logging
import warnings

LIGHTNING_LOG = logging.getLogger("pytorch_lightning.utilities.rank_zero")


def no_adverts(record: logging.LogRecord) -> bool:
    """A logging filter that leaves out Lightning's adverts."""
    return not str(record.msg).startswith("💡 Tip")


def quiet_lightning() -> None:
    """Install the filters; a second call adds nothing."""
    if no_adverts not in LIGHTNING_LOG.filters:
        LIGHTNING_LOG.addFilter(no_adverts)
    # Lightning 2.6 flattens every fit's loaders with torch's LeafSpec, deprecated since torch 2.10: its users can
    # do nothing about it. Only that warning, only from Lightning's modules.
    warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning,
                            module="pytorch_lightning")
