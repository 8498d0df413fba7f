"""How ``lightning-style fit --help`` reads: a description with examples, the style options before the Trainer's,
this command's own defaults in the texts, and docstrings' reST markup as plain text."""

import re

from jsonargparse import ArgumentParser, DefaultHelpFormatter

DESCRIPTION = """\
Paint photographs in the style of paintings (Gatys, Ecker & Bethge's neural style transfer): one image is
optimised per content/style pair, pairs are streamed through batches of --data.batch_size, and each result is
written to --output.dir as <content>__<style>.png when its batch finishes.

Examples:
  lightning-style fit                                  # the example images, 512 px, 500 Adam steps
  lightning-style fit --data.content my_photo.jpg --data.style painting.jpg
  lightning-style fit --data.content photos/ --data.style paintings/ --config configs/lbfgs.yaml
  lightning-style fit ... --ckpt_path last             # go on after a stop (results on disk are always kept)

Every option below can also be set in YAML (--config FILE, composable); --print_config shows the result.
The style options come first; Lightning's Trainer options follow.
"""
FIT_SUMMARY = "paint the content images in the style of the style images; each result goes to --output.dir"
USAGE = "lightning-style fit [--config FILE] [--model.OPTION VALUE] [--data.OPTION VALUE] [--trainer.OPTION VALUE] ..."
FIRST = ("data", "model", "output", "images")  # shown before the Trainer's; instantiated in this order too
TEXTS = {  # where this command's behaviour differs from what the Trainer's docstring says
    "--trainer.logger": "Logger(s) for the metrics; null: a CSVLogger writing <output.dir>/logs/version_N/metrics.csv "
                        "(configs/wandb.yaml: W&B); false: none.",
    "--trainer.default_root_dir": "Folder for Lightning's files when no logger sets one; null: --output.dir.",
    "--trainer.enable_checkpointing": "null or true: save <output.dir>/checkpoints/last.ckpt every 100 steps, at "
                                      "batch ends and at the end (resume with --ckpt_path last); false: no "
                                      "checkpoints.",
    "--trainer.max_epochs": "Leave it at -1: a run ends when every pair has had --data.steps steps "
                            "(--trainer.max_steps caps a run's total steps).",
    "--trainer.devices": "Devices, one process each: a number, a list of indices, or auto (every visible GPU; one "
                         "process on a CPU).",
    "--trainer.precision": "32-true, or bf16-mixed / 16-mixed: the VGG in half precision, the Gram matrices and "
                           "losses in float32 (16-true and bf16-true are refused: they would store the images in 16 "
                           "bits).",
    "--trainer.strategy": "auto (one process) or ddp: processes that each optimise their own batches and never "
                          "exchange images (lightning_style.IndependentDDPStrategy); strategies that shard or "
                          "compile a model (DeepSpeed, FSDP, XLA) are refused.",
    "--trainer.log_every_n_steps": "How often the loss terms are logged, in steps.",
    "--trainer.enable_model_summary": "Lightning's model summary (its only parameter, the images, exists per batch).",
    "--trainer.benchmark": "torch.backends.cudnn.benchmark: cuDNN picks its fastest kernels for each image shape.",
    "--ckpt_path": "last: go on from <output.dir>/checkpoints/last.ckpt (if there is one), or a checkpoint file. "
                   "Results in --output.dir are kept either way.",
}


def plain_text(text: str) -> str:
    """``:class:`~a.b.C``` -> ``C``, ````code```` -> ``code``, ```text <url>`_`` -> ``text (url)``."""
    text = re.sub(r":\w+:`~[\w.]*?(\w+)`", r"\1", text)
    text = re.sub(r":\w+:`([^`]+)`", r"\1", text)
    text = re.sub(r"`([^`<]+?) <([^>]+)>`_+", r"\1 (\2)", text)
    return re.sub(r"``([^`]+)``", r"\1", text)


class HelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help with reST markup turned into plain text and descriptions kept as written."""

    def _expand_help(self, action) -> str:
        text = plain_text(super()._expand_help(action))
        text = re.sub(r"\s*[\w.]*(DeepSpeed|FSDP|XLA|SingleDeviceXLA|ModelParallel)Strategy,?", "", text)
        return text.replace(",)", ")")  # strategies refused here (options.check_trainer) are not offered

    def _format_text(self, text: str) -> str:
        text = plain_text(text % {"prog": self._prog} if "%(prog)" in text else text)
        return "".join(line.rstrip() + "\n" for line in text.splitlines()) + "\n"


MAIN_PARSER = {"description": DESCRIPTION.split("\n\n")[0] + "\n\nOptions: lightning-style fit --help",
               "formatter_class": HelpFormatter}
FIT_PARSER = {"description": DESCRIPTION, "usage": USAGE, "formatter_class": HelpFormatter}


def arrange_help(parser: ArgumentParser) -> None:
    """Put the style option groups first, title the others for this command, and set its own texts. jsonargparse
    instantiates the groups in this order: the data's file checks run before the model fetches VGG weights."""
    going_on = parser._option_string_actions["--ckpt_path"].container
    going_on.title = "Going on from a checkpoint"
    first = [going_on, *(parser.groups[key] for key in FIRST)]
    rest = [group for group in parser._action_groups if group not in first]
    parser._action_groups = rest[:2] + first + rest[2:]  # argparse's own two groups (positionals, options) first
    parser.groups["trainer"].title = "Lightning's Trainer: devices, precision, logging, checkpoints"
    for group in parser._action_groups:
        group.title = group.title and plain_text(group.title)
    for option, text in TEXTS.items():
        parser._option_string_actions[option].help = text
    for option in ("--data.content", "--data.style"):
        parser._option_string_actions[option].required = False  # the example images by default
