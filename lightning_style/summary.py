"""What the command line says at the end of a run: what the run did, what the job has done, how to go on."""

import shlex
import signal
from collections.abc import Mapping
from pathlib import Path

from .callbacks import ImageWriter
from .shards import Shard

# Options that would not go on as they were given: a run that resumes reads its checkpoint by itself, a step cap
# would stop it at once, and overwrite would redo what the run wrote.
NOT_GOING_ON = ("--ckpt_path", "--trainer.max_steps", "--output.overwrite")
SHARD_OPTIONS = ("--data.shard", "--data.shards")
WHOLE_JOB = Shard()


def launched_by(environ: Mapping[str, str]) -> str:
    """How this process was started, when the command that goes on must be started the same way: ``torchrun``
    (its agent's variables) or ``srun`` (a SLURM step of several tasks); else ``""``.

    >>> launched_by({"TORCHELASTIC_RUN_ID": "none", "WORLD_SIZE": "2"})
    'torchrun'
    """
    if "TORCHELASTIC_RUN_ID" in environ:
        return "torchrun"
    tasks = environ.get("SLURM_NTASKS", "")
    if tasks.isdigit() and int(tasks) > 1 and "SLURM_STEP_ID" in environ:
        return "srun"
    return ""


def summary(writer: ImageWriter, signum: int | None, seconds: float, args: list[str], last: Path | None,
            shard: Shard = WHOLE_JOB, job_names: list[str] | None = None, launcher: str = "") -> list[str]:
    """``lightning-style: [stopped by SIG...; ]this run: N pairs in T; the job: D of A done[, S skipped]; images in
    DIR/``, then, when pairs are left, ``to go on: lightning-style ...``: the same command, going on from ``last``
    (the checkpoint) when it exists, and under the ``launcher`` that started this run (see :func:`launched_by`).
    A shard of a job says ``shard I of N: D of A done`` and how many of the job's pairs (``job_names``) have
    results in the folder, and its command names the shard."""
    done, total = writer.summary()
    stopped = f"stopped by {signal.Signals(signum).name}; " if signum else ""
    skipped = (f", {writer.skipped} skipped (their files could not be decoded: see the warnings above)"
               if writer.skipped else "")
    part = "the job" if shard.count == 1 else str(shard)
    job = ""
    if shard.count > 1 and job_names is not None:
        job = f"; the job: {writer.record.count_results(job_names)} of {len(job_names)} pairs have results"
    lines = [f"lightning-style: {stopped}this run: {writer.written} pair{'s' * (writer.written != 1)} in "
             f"{_duration(seconds)}; {part}: {done} of {total} done{skipped}{job}; images in {writer.dir}/"]
    if done < total:
        resume = " --ckpt_path last" if last and last.exists() else ""
        for option in NOT_GOING_ON + (SHARD_OPTIONS if shard.count > 1 else ()):
            args = _without_option(args, option)
        keep = " --output.overwrite false" if writer.overwrite else ""  # also when a config file says true
        # The shard by number: the same part of the job when run by hand, away from its array task's variables.
        named = f" --data.shard {shard.index} --data.shards {shard.count}" if shard.count > 1 else ""
        how = f" (under {launcher}, as this run was started)" if launcher else ""
        lines.append(f"to go on{how}: lightning-style {shlex.join(args)}{keep}{named}{resume}")
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
