"""Quality and time to quality of the style losses, optimisers and pyramid, scored by measures that no run optimises.

Every run stylises the same pairs from ``examples/`` (one batch each: their shapes differ) with the real pretrained
VGG16 that installs through pip (``lightning_style.offline_weights``), keeps a copy of the images every ``--every``
steps with the wall time since ``fit`` started, and scores each copy afterwards (the scoring is not timed):

- style: the Gram, W2 (Gaussian) and sliced-W2 distances to the style image over relu1_1..relu5_1, each relative
  to the style's own statistics (the sliced one with fixed directions); their mean relative to the photo's is the
  run's **style score** (1 at the photo, lower is better);
- content: the content distance at relu4_2 (as the content loss), and the SSIM of the edge maps (Sobel, grey)
  against the photo's;
- colour: the total-variation distance between the 8x8x8 RGB histograms of the result and the style.

Per run it prints each measure at the end, the steps and seconds to 95% of the run's own style-score
improvement, and to the default run's (``gram-adam``) quality: its final style score and content distance,
both; for a run with a plateau stop, where each pair stopped and the steps that saved; it writes ``quality.md``,
``quality.json`` and a content | style | results panel per pair into ``--out``.

    python benchmarks/quality.py --out outputs/quality            # every run (about an hour on 2 CPU cores)
    python benchmarks/quality.py --out outputs/quality --reuse    # only the runs not yet in outputs/quality
    python benchmarks/quality.py --runs gram-adam sliced-adam --steps 60 --size 128 --out /tmp/q   # a quick look
"""

import argparse
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image

from lightning_style import PairDataModule, StyleTransfer
from lightning_style.callbacks import side_by_side, to_pil
from lightning_style.features import VGGFeatures
from lightning_style.offline_weights import default_path, fetch_hed_vgg16

PAIRS = [("examples/content/chelsea.png", "examples/style/swirls.png"),
         ("examples/content/astronaut.png", "examples/style/embers.png")]
LBFGS = {"class_path": "torch.optim.LBFGS", "init_args": {"lr": 1, "max_iter": 1, "history_size": 20}}
RUNS = {  # name: StyleTransfer options (steps come from --steps, or --lbfgs_steps for L-BFGS)
    "gram-adam": {},
    "wasserstein-adam": {"style_loss": "wasserstein"},
    "sliced-adam": {"style_loss": "sliced"},
    "gram-lbfgs": {"optimizer": LBFGS},
    "wasserstein-lbfgs": {"style_loss": "wasserstein", "optimizer": LBFGS},
    "sliced-lbfgs": {"style_loss": "sliced", "optimizer": LBFGS},
    "gram-adam-pyramid": {"levels": 2, "level_steps": 100},
    "gram-adam-plateau": {"plateau_tolerance": 0.02, "plateau_window": 50},
}


class Snapshots(pl.Callback):
    """For each pair: its content and style, ``(seconds since its batch started, steps done, image)`` every
    ``every`` steps and at the start, and the step at which a plateau stop ended it (None: it ran every step)."""

    def __init__(self, every: int) -> None:
        self.every, self.taken, self.images, self.stopped_at = every, {}, {}, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch.step == 0:  # before the module's hook, which builds the batch's targets
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch.step == 0:  # every run starts from the photo (init: content)
            run = pl_module.run
            for row, name in enumerate(run.names):
                self.images[name] = (run.contents[row].clone(), run.styles[row][0].clone())
                self.taken[name] = [(0.0, 0, run.contents[row].clone())]
        done = batch.step + 1
        if done % self.every == 0 or pl_module.result is not None:
            self._take(pl_module, time.perf_counter() - self.start, done)
        if pl_module.result is not None:
            self.stopped_at.update(dict.fromkeys(pl_module.result.names, pl_module.result.stopped_at))

    def _take(self, pl_module, seconds: float, steps: int) -> None:
        # Every few steps, the images as they are (not the last checked ones that a snapshot gives).
        for name, image in zip(pl_module.run.names, pl_module.images.detach(), strict=True):
            self.taken.setdefault(name, []).append((seconds, steps, image.clone()))


def optimizer_callable(spec: dict | None):
    if spec is None:
        return None
    cls = getattr(torch.optim, spec["class_path"].rsplit(".", 1)[1])
    return lambda params: cls(params, **spec["init_args"])


def stylise(options: dict, steps: int, size: int, weights: str, every: int) -> Snapshots:
    pl.seed_everything(0, verbose=False)
    options = dict(options)
    optimizer = optimizer_callable(options.pop("optimizer", None))
    model = StyleTransfer(backbone="vgg16", weights=weights, optimizer=optimizer, **options)
    data = PairDataModule([c for c, _ in PAIRS], [s for _, s in PAIRS], pairing="zip", image_size=size, steps=steps)
    snapshots = Snapshots(every)
    with tempfile.TemporaryDirectory() as out:
        trainer = pl.Trainer(accelerator="cpu", max_epochs=-1, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, default_root_dir=out, callbacks=[snapshots])
        trainer.fit(model, datamodule=data)
    return snapshots


def style_score(scores: dict[str, float], start: dict[str, float]) -> float:
    return sum(scores[k] / start[k] for k in ("gram", "w2", "sliced")) / 3


def summarise(name: str, trace: list[dict]) -> dict:
    """A run's final measures (means over the pairs), and its seconds to 95% of its own improvement."""
    last = trace[-1]["pairs"]
    final = {key: sum(pair[key] for pair in last) / len(last) for key in last[0]}
    scores = [t["score"] for t in trace]
    goal = scores[-1] + 0.05 * (scores[0] - scores[-1])
    at95 = next(t for t in trace if t["score"] <= goal)
    return {"run": name, "steps": trace[-1]["steps"], "seconds": trace[-1]["seconds"], "score": scores[-1],
            "seconds_to_95": at95["seconds"], "steps_to_95": at95["steps"], **final}


def plateau_line(name: str, result: dict, without: dict | None) -> str:
    """Where a plateau stop ended each pair, the steps it saved against the plan, and against the fixed step
    count that gives every pair the quality it had when it stopped (the largest stop: up to there, a run with the
    stop and the same run ``without`` it are the same)."""
    planned = result["summary"]["steps"]
    stops = [planned if step is None else step for step in result["stopped_at"]]
    s = result["summary"]
    line = (f"\n{name}: the pairs stopped at steps {', '.join(map(str, stops))} of {planned}, "
            f"{1 - sum(stops) / (len(stops) * planned):.0%} fewer steps than planned, "
            f"for a style score of {s['score']:.3f} and a content distance of {s['content']:.3f}")
    if without is not None:
        line += f" (without the stop: {without['summary']['score']:.3f} and {without['summary']['content']:.3f})"
    saved = 1 - sum(stops) / (len(stops) * max(stops))
    return line + f"; at equal quality (every pair run for {max(stops)} steps): {saved:.0%} fewer."


def write_table(results: dict, out: Path) -> None:
    """``quality.md``: a row per run. "To gram-adam's quality": the first copy whose style score and content
    distance are both at least as good as the default run's at its end."""
    reference = results.get("gram-adam", {}).get("summary")
    lines = ["| run | steps | seconds | style score | to 95%: steps (s) | to gram-adam's quality: steps (s) "
             "| Gram | W2 | sliced | content | edge SSIM | colour |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, result in results.items():
        s = result["summary"]
        content = lambda t: sum(p["content"] for p in t["pairs"]) / len(t["pairs"])
        reach = "-" if reference is None else next(
            (f"{t['steps']} ({t['seconds']:.0f})" for t in result["trace"]
             if t["score"] <= reference["score"] + 1e-9 and content(t) <= reference["content"] + 1e-9), "never")
        lines.append(f"| {name} | {s['steps']} | {s['seconds']:.0f} | {s['score']:.3f} | "
                     f"{s['steps_to_95']} ({s['seconds_to_95']:.0f}) | {reach} | "
                     f"{s['gram']:.4f} | {s['w2']:.4f} | {s['sliced']:.4f} | {s['content']:.3f} | "
                     f"{s['edge_ssim']:.3f} | {s['colour']:.3f} |")
    lines += [plateau_line(name, result, results.get(name.removesuffix("-plateau")))
              for name, result in results.items() if any(step is not None for step in result.get("stopped_at", []))]
    (out / "quality.md").write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    # A sibling, importable when this file runs as a script (benchmarks/ on the path); imported here, as the
    # tests load this file by its path for plateau_line.
    from quality_scores import STYLE_LAYERS, Scorer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=500, help="Adam steps (the default's)")
    parser.add_argument("--lbfgs_steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=25, help="steps between scored copies")
    parser.add_argument("--weights", default=None, help="VGG16 state_dict (default: the offline pretrained one)")
    parser.add_argument("--out", default="outputs/quality")
    parser.add_argument("--table_from", default=None, help="only rebuild quality.md from this quality.json")
    parser.add_argument("--reuse", action="store_true", help="keep the runs already in --out (same options!)")
    args = parser.parse_args(argv)
    if args.table_from:
        write_table(json.loads(Path(args.table_from).read_text()), Path(args.out))
        return
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    weights = args.weights or str(fetch_hed_vgg16(default_path()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    features = VGGFeatures(["relu4_2", *STYLE_LAYERS], backbone="vgg16", weights=weights)
    old = json.loads((out / "quality.json").read_text()) if args.reuse and (out / "quality.json").is_file() else {}
    results, scorers = {}, None
    print(f"{len(PAIRS)} pairs, {args.size} px, VGG16 (offline pretrained weights), {torch.get_num_threads()} threads")
    for name in args.runs:
        if name in old and all((out / "images" / name / f"{i}.png").is_file() for i in range(len(PAIRS))):
            results[name] = old[name]
            print(f"{name:20s} kept from {out / 'quality.json'}")
            continue
        lbfgs = "lbfgs" in name
        snapshots = stylise(RUNS[name], args.lbfgs_steps if lbfgs else args.steps, args.size, weights, args.every)
        names = list(snapshots.taken)  # one pair per batch (the examples differ in shape): times add up
        if scorers is None:
            scorers = [Scorer(features, *snapshots.images[n]) for n in names]
            for i, n in enumerate(names):
                save(snapshots.images[n][0], out / "images" / "content" / f"{i}.png")
                save(snapshots.images[n][1], out / "images" / "style" / f"{i}.png")
        trace = []
        for k in range(max(len(snapshots.taken[n]) for n in names)):
            at = [snapshots.taken[n][min(k, len(snapshots.taken[n]) - 1)] for n in names]
            pairs = [scorer(image) for scorer, (_, _, image) in zip(scorers, at, strict=True)]
            trace.append({"seconds": sum(a[0] for a in at), "steps": max(a[1] for a in at), "pairs": pairs})
        for t in trace:
            t["score"] = sum(style_score(p, s) for p, s in zip(t["pairs"], trace[0]["pairs"], strict=True)) / len(PAIRS)
        results[name] = {"summary": summarise(name, trace), "trace": trace,
                         "stopped_at": [snapshots.stopped_at.get(n) for n in names]}
        for i, n in enumerate(names):
            save(snapshots.taken[n][-1][2], out / "images" / name / f"{i}.png")
        s = results[name]["summary"]
        print(f"{name:20s} {s['steps']:4d} steps {s['seconds']:6.1f} s  style score {s['score']:.3f}  "
              f"95% in {s['steps_to_95']} steps, {s['seconds_to_95']:6.1f} s  content {s['content']:.3f}  "
              f"edge SSIM {s['edge_ssim']:.3f}  colour {s['colour']:.3f}", flush=True)
        (out / "quality.json").write_text(json.dumps({**old, **results}, indent=1))
    write_table(results, out)
    load = lambda folder, i: to_tensor(Image.open(out / "images" / folder / f"{i}.png"))
    for i, (content, _) in enumerate(PAIRS):
        row = [load("content", i), load("style", i)] + [load(name, i) for name in args.runs]
        to_pil(side_by_side(*row)).save(out / f"panel_{Path(content).stem}.jpg", quality=92)
    losses = [name for name in ("gram-adam", "wasserstein-adam", "sliced-adam") if name in results]
    rows = [side_by_side(load("content", i), load("style", i), *[load(name, i) for name in losses])
            for i in range(len(PAIRS))]
    width = min(row.shape[2] for row in rows)
    rows = [F.interpolate(row[None], size=(round(row.shape[1] * width / row.shape[2]), width), mode="bilinear",
                          antialias=True)[0] for row in rows]
    gap = torch.ones(3, 4, width)
    to_pil(torch.cat([rows[0], gap, *rows[1:]], dim=1)).save(out / "style_losses.jpg", quality=90)
    print(f"\npanels (content | style | {' | '.join(args.runs)}), style_losses.jpg (content | style | "
          f"{' | '.join(losses)}) and tables in {out}/")


def save(image: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(image).save(path)


def to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"))).permute(2, 0, 1).float() / 255

if __name__ == "__main__":
    main()
