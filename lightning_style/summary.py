"""What the command line says at the end of a run: what the run did, what the job has done, how to go on."""

import shlex
import signal
from pathlib import Path

from .callbacks import ImageWriter

# Options that would not go on as they were given: a run that resumes reads its checkpoint by itself, a step cap
# would stop it at once, and overwrite would redo what the run wrote.
NOT_GOING_ON = ("--ckpt_path", "--trainer.max_steps", "--output.overwrite")


def summary(writer: ImageWriter, signum: int | None, seconds: float, args: list[str], last: Path | None) -> list[str]:
    """``lightning-style: [stopped by SIG...; ]this run: N pairs in T; the job: D of A done[, S skipped]; images in
    DIR/``, then, when pairs are left, ``to go on: lightning-style ...``: the same command, going on from ``last``
    (the checkpoint) when it exists."""
    done, total = writer.summary()
    stopped = f"stopped by {signal.Signals(signum).name}; " if signum else ""
    skipped = (f", {writer.skipped} skipped (their files could not be decoded: see the warnings above)"
               if writer.skipped else "")
    lines = [f"lightning-style: {stopped}this run: {writer.written} pair{'s' * (writer.written != 1)} in "
             f"{_duration(seconds)}; the job: {done} of {total} done{skipped}; images in {writer.dir}/"]
    if done < total:
        resume = " --ckpt_path last" if last and last.exists() else ""
        for option in NOT_GOING_ON:
            args = _without_option(args, option)
        keep = " --output.overwrite false" if writer.overwrite else ""  # also when a config file says true
        lines.append(f"to go on: lightning-style {shlex.join(args)}{keep}{resume}")
    return lines


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _without_option(args: list[str], option: str) -> list[str]:
    """``args`` without ``option`` and its value."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            kept.append(arg)
    return kept
