import os
import re

import pytest
import torch
from PIL import Image

from lightning_style import PairDataModule, StyleTransfer, StyleTransferError
from lightning_style.features import build_features

from helpers import write_image


def test_pairing(images):
    contents, styles = [str(images["content"]), str(images["content2"])], [str(images["style"]), str(images["style2"])]
    product = PairDataModule(contents, styles, pairing="product")
    assert product.names == ["photo__paint", "photo__paint2", "photo2__paint", "photo2__paint2"]
    assert PairDataModule(contents, styles, pairing="zip").names == ["photo__paint", "photo2__paint2"]
    assert PairDataModule(contents, styles[0], pairing="zip").names == ["photo__paint", "photo2__paint"]


def test_folders_are_sorted_and_entries_that_are_not_images_skipped_with_one_warning(images):
    folder = images["content"].parent
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub").mkdir()
    os.mkfifo(folder / "pipe.png")
    (folder / "dead.png").symlink_to(folder / "gone.png")
    (folder / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(100))  # a HEIC header
    with pytest.warns(UserWarning) as warned:
        data = PairDataModule(str(folder), str(images["style"]))
    (message,) = [str(warning.message) for warning in warned]
    assert message.endswith(
        "skipping 5 entries: dead.png (a broken link (its target does not exist)), notes.txt (not an image file), "
        "phone.heic (HEIC, which Pillow cannot read), pipe.png (not a regular file (a pipe, socket or device)), "
        "sub (a folder)")
    assert data.names == ["paint__paint", "paint2__paint", "photo__paint", "photo2__paint"]


def test_special_files_given_as_images(tmp_path, images):
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    (tmp_path / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(100))
    for name, message in [("pipe.png", "not a regular file"),
                          ("loop.png", "cannot open it (Too many levels of symbolic links)"),
                          ("photo.heic", "Pillow cannot read HEIC images; convert it to JPEG or PNG first")]:
        with pytest.raises(StyleTransferError, match=re.escape(f"content {tmp_path / name}: {message}")):
            PairDataModule(str(tmp_path / name), str(images["style"]))


def test_a_batch_decodes_each_image_once(images):
    data = PairDataModule([str(images["content"]), str(images["content2"])], str(images["style"]), image_size=40)
    batch = data.decode([0, 1])
    assert batch.names == ("photo__paint", "photo2__paint") and batch.contents.shape == (2, 3, 33, 40)
    assert batch.styles[0][0] is batch.styles[1][0]


def test_style_scale(images):
    data = PairDataModule(str(images["content"]), str(images["style"]), image_size=40, style_scale=0.5)
    batch = data.decode([0])
    assert batch.contents.shape == (1, 3, 33, 40) and batch.styles[0][0].shape == (3, 17, 20)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", r"content .*missing.png: no such file"),
        ("empty", r"content .*empty.png: the file is empty"),
        ("text", r"content .*text.jpg: not a readable image"),
        ("zip", r"^PairDataModule\(pairing='zip'\) needs as many content as style images \(or one of either\), "
                r"got 2 and 3$"),
        ("size", r"^PairDataModule\(image_size=0\) must be a whole number >= 1$"),
        ("bomb", r"content .*huge.png: too large, refused before decoding \(Image size \(400000000 pixels\)"),
    ],
)
def test_bad_input_is_refused_before_decoding(tmp_path, images, case, message):
    content, style, kwargs = str(images["content"]), str(images["style"]), {}
    if case == "missing":
        content = str(tmp_path / "missing.png")
    elif case == "empty":
        (tmp_path / "empty.png").touch()
        content = str(tmp_path / "empty.png")
    elif case == "text":
        (tmp_path / "text.jpg").write_text("hello")
        content = str(tmp_path / "text.jpg")
    elif case == "zip":
        content, style, kwargs = [content] * 2, [style] * 3, {"pairing": "zip"}
    elif case == "size":
        kwargs = {"image_size": 0}
    elif case == "bomb":
        Image.new("1", (20000, 20000)).save(tmp_path / "huge.png")  # 50 kB on disk, 400 Mpx decoded
        content = str(tmp_path / "huge.png")
    with pytest.raises(StyleTransferError, match=message):
        PairDataModule(content, style, **kwargs)


def test_image_too_small_for_the_layers(tmp_path, images):
    wide = write_image(tmp_path / "wide.png", size=(400, 20))
    data = PairDataModule(str(wide), str(images["style"]), image_size=128)
    with pytest.raises(StyleTransferError,
                       match=r"^PairDataModule\(image_size=128\) makes content .*wide.png 128x6 px, .* at least 16 px"):
        data.check_min_size(16)


def test_two_pairs_with_the_same_name_are_refused(tmp_path, images):
    twin = write_image(tmp_path / "other" / "photo.jpg", seed=9)
    with pytest.raises(StyleTransferError, match="two pairs are both named 'photo__paint': rename one of the images"):
        PairDataModule([str(images["content"]), str(twin)], str(images["style"]))


def test_blend_pairs_every_content_with_all_styles(images):
    contents, styles = [str(images["content"]), str(images["content2"])], [str(images["style"]), str(images["style2"])]
    data = PairDataModule(contents, styles, pairing="blend", style_weights=[3, 1])
    assert data.names == ["photo__paint+paint2", "photo2__paint+paint2"]
    batch = data.decode([0])
    assert len(batch.styles[0]) == 2 and batch.style_weights[0] == (0.75, 0.25)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pairing": "blend", "style_weights": [1.0]},
         r"^PairDataModule\(style_weights=\[1.0\]\) must be 2 weights >= 0"),
        ({"pairing": "blend", "style_weights": [1.0, -1.0]},
         r"^PairDataModule\(style_weights=\[1.0, -1.0\]\) must be 2 "),
        ({"pairing": "product", "style_weights": [1.0, 1.0]},
         r"^PairDataModule\(style_weights=\[1.0, 1.0\]\) needs pairing='blend'$"),
    ],
)
def test_bad_blend_weights(images, kwargs, message):
    with pytest.raises(StyleTransferError, match=message):
        PairDataModule(str(images["content"]), [str(images["style"]), str(images["style2"])], **kwargs)


def test_sizes_are_the_displayed_ones(tmp_path, images):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    Image.new("RGB", (60, 40), (90, 120, 30)).save(tmp_path / "portrait.jpg", exif=exif)
    data = PairDataModule(str(tmp_path / "portrait.jpg"), str(images["style"]), image_size=30)
    assert data.shapes()[0] == [(30, 20)]


def test_long_blend_names_are_short_and_stable(tmp_path):
    content = write_image(tmp_path / "photo.png")
    styles = [str(write_image(tmp_path / f"a_rather_long_painting_name_number_{k:02d}.png", seed=k)) for k in range(14)]
    names = {PairDataModule(str(content), styles, pairing="blend").names[0] for _ in range(2)}
    (name,) = names
    assert re.fullmatch(r"photo__14-styles-[0-9a-f]{10}", name)
    assert PairDataModule(str(content), styles[:2], pairing="blend").names == [
        "photo__a_rather_long_painting_name_number_00+a_rather_long_painting_name_number_01"]


def test_a_tiny_style_scale_names_style_scale(images):
    data = PairDataModule(str(images["content"]), str(images["style"]), image_size=64, style_scale=0.0001)
    with pytest.raises(StyleTransferError,
                       match=r"^PairDataModule\(style_scale=0.0001\) makes style .*paint.png 1x1 px, "
                             r".*\(raise style_scale"):
        data.check_min_size(16)


def without_root_powers(code: str) -> str:
    """Run ``code`` in a Python process subject to file permissions: as root (these tests' user in CI), without
    the capabilities that let root read and write everything. Returns what the code prints."""
    import shutil
    import subprocess
    import sys

    if os.geteuid() != 0:
        command = [sys.executable, "-c", code]  # permissions already apply
    elif shutil.which("setpriv"):
        command = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", sys.executable, "-c", code]
    else:
        pytest.skip("root, and no setpriv to drop root's file powers")
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_what_the_user_may_not_read_or_replace_gives_one_line_each(tmp_path):
    """Checked in one process without root's powers (a start-up of the package costs seconds): a photo and a
    folder the user cannot read, and, as root only, another user's file in a sticky folder open to all (as /tmp),
    which the user may not replace."""
    photo = write_image(tmp_path / "photo.png")
    style = write_image(tmp_path / "style.png", seed=2)
    locked = tmp_path / "locked"
    write_image(locked / "a.png")
    os.chmod(photo, 0)
    os.chmod(locked, 0)
    shared = tmp_path / "shared"
    shared.mkdir()
    write_image(shared / "photo__paint.png")
    root = os.geteuid() == 0
    if root:
        os.chown(shared / "photo__paint.png", 65534, 65534)  # another user's file,
        os.chown(shared, 65533, 65533)  # in a third user's folder open to all
        os.chmod(shared, 0o1777)
    attempt = ("from lightning_style import PairDataModule, StyleTransferError\n"
               "from lightning_style.files import check_outputs\n"
               f"for content in [{str(photo)!r}, {str(locked)!r}]:\n"
               "    try:\n"
               f"        PairDataModule(content, {str(style)!r})\n"
               "    except StyleTransferError as error:\n"
               "        print(error)\n"
               f"if {root}:\n"
               "    try:\n"
               f"        check_outputs({str(shared)!r}, ['photo__paint.png'])\n"
               "    except StyleTransferError as error:\n"
               "        print(error)\n")
    expected = [f"content {photo}: cannot read it (permission denied)",
                f"content folder {locked}: cannot list it (Permission denied)"]
    if root:
        expected.append(f"ImageWriter(dir={str(shared)!r}) holds photo__paint.png, which belongs to another user "
                        "in a shared folder, so it cannot be replaced; choose another folder")
    assert without_root_powers(attempt).splitlines() == expected


def test_python_errors_name_the_arguments_the_caller_passed(tmp_path, images):
    """Each class words its errors with its own arguments (the command line's flags: tests/test_contracts.py)."""
    with pytest.raises(StyleTransferError) as error:
        PairDataModule(images["content"], images["style"], style_weights=[1.0])
    assert str(error.value) == "PairDataModule(style_weights=[1.0]) needs pairing='blend'"
    torch.save(build_features("vgg16").state_dict(), tmp_path / "vgg16.pth")
    with pytest.raises(StyleTransferError, match=r"it fits vgg16: use backbone=vgg16$") as error:
        StyleTransfer(backbone="vgg19", weights=str(tmp_path / "vgg16.pth"))
    assert "--" not in str(error.value)
