"""Clips: frames that follow each other (Ruder et al.), measured against frames stylised on their own; the result's
frames, size, rate, rotation and audio; resume mid-clip; bad clips in one line. Clips are made by tests/clips.py."""

from pathlib import Path

import av
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.callbacks import ModelCheckpoint

from lightning_style import PairDataModule, StyleTransferError
from lightning_style.errors import OptionError
from lightning_style.flow import warping_error
from lightning_style.images import load_image
from lightning_style.video import probe_clip, read_frames, timestamps

from clips import moving_shapes, write_clip
from helpers import fit, write_image
from wandb_records import history_keys, read_records

STEPS = 6


def frames_of(folder: Path, pair: str) -> list[torch.Tensor]:
    return [load_image(path) for path in sorted((folder / pair).glob("frame-*.png"))]


@pytest.mark.slow
def test_frames_that_follow_each_other_flicker_three_times_less(tmp_path):
    """The 16-frame 64 px clip stylised twice with the same steps, frames on their own (``temporal_weight=0``)
    and each from the one before; its first frame as a photo, stylised as a still. The result is a clip of the
    same frames, size and rate."""
    clip = write_clip(tmp_path / "shapes.mp4")
    style = write_image(tmp_path / "style.png", (64, 64), seed=3)
    first = (read_frames(clip)[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    Image.fromarray(first).save(tmp_path / "first.png")  # the frame as decoded: a photo of the same pixels
    runs = {}
    for name, weight in (("independent", 0.0), ("consistent", 1000.0)):
        fit(tmp_path / name, str(clip), str(style), steps=STEPS, image_size=64, temporal_weight=weight)
        runs[name] = frames_of(tmp_path / name / "images", "shapes__style")
    fit(tmp_path / "still", str(tmp_path / "first.png"), str(style), steps=STEPS, image_size=64)
    contents = [torch.from_numpy(frame).permute(2, 0, 1).float() / 255 for frame in moving_shapes()]

    independent = warping_error(runs["independent"], contents)
    consistent = warping_error(runs["consistent"], contents)
    assert independent > 3 * consistent, (independent, consistent)
    # The first frame has no frame before it: it is the still it would be as a photo.
    assert torch.equal(runs["consistent"][0], runs["independent"][0])
    assert torch.equal(runs["consistent"][0], load_image(tmp_path / "still" / "images" / "first__style.png"))
    # and the frames are stylised: not the contents
    assert all(float((frame - content).abs().mean()) > 0.02
               for frame, content in zip(runs["consistent"], contents, strict=True))

    result = tmp_path / "consistent" / "images" / "shapes__style.mp4"
    info, source = probe_clip(result), probe_clip(clip)
    assert (info.width, info.height, info.frames, info.rate) == (64, 64, 16, source.rate)
    # H.264 at crf 18 with half-resolution colour (yuv420p): close to the frames written, not equal
    for frame, written in zip(read_frames(result), runs["consistent"], strict=True):
        assert float((frame - written).abs().mean()) < 0.05


def test_a_clip_killed_mid_frame_goes_on_at_that_frame(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", moving_shapes(frames=5))
    style = write_image(tmp_path / "style.png", (64, 64), seed=3)
    out = tmp_path / "run"
    kwargs = {"steps": 4, "image_size": 64, "temporal_weight": 1000.0}
    fit(out, str(clip), str(style), max_steps=10, callbacks=[ModelCheckpoint(out / "ckpt", save_last=True)],
        **kwargs)  # frames 1 and 2 done, frame 3 half-way
    assert len(list((out / "images" / "clip__style").glob("*.png"))) == 2
    assert not (out / "images" / "clip__style.mp4").exists()
    fit(out, str(clip), str(style), ckpt_path=str(out / "ckpt" / "last.ckpt"), **kwargs)
    fit(tmp_path / "straight", str(clip), str(style), **kwargs)
    resumed, straight = frames_of(out / "images", "clip__style"), frames_of(tmp_path / "straight" / "images",
                                                                             "clip__style")
    assert len(resumed) == 5 and all(torch.equal(a, b) for a, b in zip(resumed, straight, strict=True))
    assert probe_clip(out / "images" / "clip__style.mp4").frames == 5
    # a deleted frame is redone, and so is every frame after it (each starts from the one before); the video of
    # the old frames goes as soon as the run starts
    stamp = (out / "images" / "clip__style" / "frame-00002.png").stat().st_mtime_ns
    (out / "images" / "clip__style" / "frame-00004.png").unlink()
    fit(out, str(clip), str(style), max_steps=1, **kwargs)
    assert not (out / "images" / "clip__style.mp4").exists()
    _, trainer = fit(out, str(clip), str(style), **kwargs)
    assert trainer.global_step == 2 * 4
    assert (out / "images" / "clip__style" / "frame-00002.png").stat().st_mtime_ns == stamp
    assert probe_clip(out / "images" / "clip__style.mp4").frames == 5


def test_a_folder_of_photos_and_clips_keeps_rates_rotations_and_sound(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    pts = [t * t * 10 for t in range(5)]  # a variable frame rate
    write_clip(folder / "vfr.mp4", moving_shapes(frames=5), pts=pts)
    write_clip(folder / "turned.mp4", moving_shapes(frames=3, width=64, height=48), rotation=90)
    write_clip(folder / "sound.mkv", moving_shapes(frames=3), audio="aac")
    write_clip(folder / "pcm.mov", moving_shapes(frames=2), audio="pcm_s16le")  # MP4 cannot hold PCM: AAC
    write_image(folder / "photo.png", (64, 48))
    style = write_image(tmp_path / "style.png", (64, 64), seed=3)
    _, trainer = fit(tmp_path / "run", str(folder), str(style), steps=2, image_size=64, batch_size=2)
    out = tmp_path / "run" / "images"
    assert (out / "photo__style.png").is_file()
    source, result = timestamps(folder / "vfr.mp4"), timestamps(out / "vfr__style.mp4")
    seconds = [[float(stamp * base) for stamp in stamps] for stamps, base in (source, result)]
    assert np.allclose(seconds[0], seconds[1], atol=1e-3), seconds
    turned = probe_clip(out / "turned__style.mp4")
    assert (turned.width, turned.height, turned.rotation) == (48, 64, 0)  # upright, as a player showed the source
    # the picture is the source turned a quarter counterclockwise (as the flag says), not clockwise
    first = load_image(out / "turned__style" / "frame-00001.png")
    source = moving_shapes(frames=1, width=64, height=48)[0]
    left, right = (torch.from_numpy(np.rot90(source, k).copy()).permute(2, 0, 1).float() / 255 for k in (1, -1))
    assert float((first - left).abs().mean()) < 0.5 * float((first - right).abs().mean())
    for clip in ("sound", "pcm"):
        with av.open(str(out / f"{clip}__style.mp4")) as container:
            (audio,) = container.streams.audio
            assert audio.codec_context.name == "aac" and float(audio.duration * audio.time_base) > 0.9


def test_bad_clips_give_one_line_before_any_compute(tmp_path):
    style = write_image(tmp_path / "style.png")
    good = write_clip(tmp_path / "good.mp4", moving_shapes(frames=3))
    (tmp_path / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "cut.mp4").write_bytes(good.read_bytes()[:600])
    (tmp_path / "empty.mp4").write_bytes(b"")
    with av.open(str(tmp_path / "sound-only.mp4"), "w") as container:
        sound = container.add_stream("aac", rate=44100)
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
        chunk.sample_rate, chunk.pts = 44100, 0
        container.mux(sound.encode(chunk))
        container.mux(sound.encode(None))
    cases = {
        "garbage.mp4": r"^content .*garbage.mp4: not a readable video",
        "cut.mp4": r"^content .*cut.mp4: (not a readable video|holds no frames|damaged)",
        "empty.mp4": r"^content .*empty.mp4: the file is empty$",
        "sound-only.mp4": r"^content .*sound-only.mp4: holds no video stream$",
    }
    for name, message in cases.items():
        with pytest.raises(StyleTransferError, match=message) as error:
            PairDataModule(str(tmp_path / name), str(style), image_size=64)
        assert "\n" not in str(error.value)
    with pytest.raises(OptionError, match=r"^PairDataModule\(image_size=10\) makes the frames of clip .*good.mp4 10x10 "
                                          r"px, but the optical flow needs at least 12 px a side$"):
        PairDataModule(str(good), str(style), image_size=10)
    with pytest.raises(StyleTransferError, match=r"^style .*good.mp4: a clip can only be a content"):
        PairDataModule(str(style), str(good))
    with pytest.raises(OptionError, match=r"^PairDataModule\(masks=.*\) cannot go with clips"):
        PairDataModule(str(good), [str(style), str(style)], pairing="blend", masks=[str(style), str(style)])


def test_a_clips_frames_stay_together_in_order_on_one_process_and_shard(tmp_path):
    (tmp_path / "in").mkdir()
    for k in range(3):
        write_clip(tmp_path / "in" / f"clip{k}.mp4", moving_shapes(frames=4 + k))
        write_image(tmp_path / "in" / f"photo{k}.png", (64, 64), seed=k)
    style = write_image(tmp_path / "style.png")
    data = PairDataModule(str(tmp_path / "in"), str(style), image_size=64, batch_size=2)
    assert len(data.names) == 3 + 4 + 5 + 6 and len(data.clips) == 3
    batches = data.deal(list(range(len(data.names))), world=2)
    assert len(batches[0]) == len(batches[1])
    for clip, (_, frames) in data.clips.items():
        places = [(rank, k) for rank, ranks in enumerate(batches) for k, batch in enumerate(ranks)
                  for i in batch if data.names[i] in frames]
        assert len({rank for rank, _ in places}) == 1, clip  # one process
        assert [data.names[batches[rank][k][0]] for rank, k in places] == list(frames)  # in order, one a batch
    shards = [PairDataModule(str(tmp_path / "in"), str(style), image_size=64, shard=k, shards=2) for k in range(2)]
    for clip, (_, frames) in data.clips.items():
        holders = [shard for shard in shards if clip in shard.clips]
        assert len(holders) == 1 and set(frames) <= set(holders[0].names)


def test_colour_preservation_works_on_clips(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", moving_shapes(frames=3))
    style = write_image(tmp_path / "style.png", (64, 64), seed=3)
    pl.seed_everything(0)
    fit(tmp_path / "run", str(clip), str(style), steps=3, image_size=64, preserve_color="luminance")
    frames = frames_of(tmp_path / "run" / "images", "clip__style")
    contents = [torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f in moving_shapes(frames=3)]
    for frame, content in zip(frames, contents, strict=True):  # each frame keeps its content's mean colour
        assert torch.allclose(frame.mean((1, 2)), content.mean((1, 2)), atol=0.08)


@pytest.mark.filterwarnings("error:There is a wandb run already in progress")
def test_the_command_line_stylises_a_clip_into_a_wandb_video(job, tmp_path, monkeypatch):
    import wandb

    clip = write_clip(tmp_path / "walk.mp4", moving_shapes(frames=3))
    monkeypatch.setenv("WANDB_MODE", "offline")
    try:
        code, printed = job("--config", "configs/wandb.yaml", "--images.every_n_steps", "0", "--data.content",
                            str(clip), "--data.steps", "2")
    finally:
        wandb.teardown()  # see test_record.py: W&B's service must not outlive the test
    assert code == 0, printed
    assert probe_clip(job.out / "walk__swirls.mp4").frames == 3
    (run,) = (job.out / "wandb").glob("offline-run-*")
    (video,) = (run / "files" / "media" / "videos" / "videos").glob("finished_*.mp4")
    assert probe_clip(video).frames == 3
    keys = history_keys(read_records(next(run.glob("run-*.wandb"))))
    assert {"train/temporal", "videos/finished/_type", "videos/finished/path"} <= keys, keys


def test_the_flow_brings_the_previous_frame_onto_this_one_and_distrusts_what_enters():
    """A pan 3 px to the left a frame (the camera moves right): warping the previous frame along the flow gives this
    frame where both show the same ground; the 3 columns that enter at the right edge are not trusted."""
    from lightning_style.flow import flow_between, warp

    from helpers import ROOT

    picture = load_image(ROOT / "examples/content/chelsea.png", 128)  # a photo: texture the flow can follow
    previous, current = picture[:, 10:74, 20:84], picture[:, 10:74, 23:87]
    flow, reliable = flow_between(previous, current)
    assert reliable.shape == (1, 64, 64) and float(reliable[0, :, -3:].mean()) == 0.0
    inside = reliable[0, 8:-8, 8:-8].bool()
    assert float(inside.float().mean()) > 0.9
    assert float((flow[8:-8, 8:-8][inside][:, 0] - 3).abs().mean()) < 0.5  # x offsets of +3 px into the previous
    error = (warp(previous, flow) - current).abs().mean(0)[8:-8, 8:-8][inside]
    assert float(error.mean()) < 0.02
