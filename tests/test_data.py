import numpy as np
import pytest
import torch
from PIL import Image

from lightning_style import PairDataModule, StyleTransferError, load_image

from conftest import write_image


def test_resize_keeps_aspect_ratio(tmp_path):
    image = load_image(write_image(tmp_path / "a.png", size=(200, 100)), long_side=64)
    assert image.shape == (3, 32, 64) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1


def test_exif_orientation_is_honoured(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    image = load_image(tmp_path / "rotated.jpg")
    assert image.shape == (3, 40, 20)  # a viewer shows it portrait
    assert image[:, :20].mean() > 0.9 and image[:, 20:].mean() < 0.1  # the white half is now on top


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "P", "CMYK", "I;16"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    path = tmp_path / f"image.{'jpg' if mode == 'CMYK' else 'png'}"
    if mode == "I;16":
        Image.fromarray(np.full((8, 8), 65535 // 2, np.uint16)).save(path)
    else:
        Image.new("RGB", (8, 8), (128, 128, 128)).convert(mode).save(path)
    image = load_image(path)
    assert image.shape == (3, 8, 8)
    torch.testing.assert_close(image.mean(), torch.tensor(128 / 255), atol=0.02, rtol=0)


def test_transparency_becomes_white(tmp_path):
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png").min() == 1


def test_pairing(images):
    contents, styles = [str(images["content"]), str(images["content2"])], [str(images["style"]), str(images["style2"])]
    product = PairDataModule(contents, styles, pairing="product")
    assert product.names == ["photo__paint", "photo__paint2", "photo2__paint", "photo2__paint2"]
    assert PairDataModule(contents, styles, pairing="zip").names == ["photo__paint", "photo2__paint2"]
    assert PairDataModule(contents, styles[0], pairing="zip").names == ["photo__paint", "photo2__paint"]


def test_folders_are_sorted_and_non_images_skipped_with_one_warning(images):
    folder = images["content"].parent
    (folder / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match=r"skipping 1 non-image file\(s\): notes.txt"):
        data = PairDataModule(str(folder), str(images["style"]))
    assert data.names == ["paint__paint", "paint2__paint", "photo__paint", "photo2__paint"]


def test_setup_decodes_each_image_once(images):
    data = PairDataModule([str(images["content"]), str(images["content2"])], str(images["style"]), image_size=40)
    data.setup("fit")
    assert [pair.content.shape for pair in data.pairs] == [(3, 33, 40)] * 2
    assert data.pairs[0].styles[0] is data.pairs[1].styles[0]


def test_style_scale(images):
    data = PairDataModule(str(images["content"]), str(images["style"]), image_size=40, style_scale=0.5)
    data.setup("fit")
    assert data.pairs[0].content.shape == (3, 33, 40) and data.pairs[0].styles[0].shape == (3, 17, 20)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", r"content .*missing.png: no such file"),
        ("empty", r"content .*empty.png: the file is empty"),
        ("text", r"content .*text.jpg: not a readable image"),
        ("zip", "--data.pairing zip needs as many content as style images, got 2 and 3"),
        ("size", "--data.image_size must be a positive number of pixels, got 0"),
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


def test_truncated_image_is_refused(tmp_path, images):
    data = images["content"].read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(StyleTransferError, match="cut.png: truncated or corrupt image"):
        load_image(tmp_path / "cut.png", role="content")


def test_image_too_small_for_the_layers(tmp_path, images):
    wide = write_image(tmp_path / "wide.png", size=(400, 20))
    data = PairDataModule(str(wide), str(images["style"]), image_size=128)
    with pytest.raises(StyleTransferError, match=r"wide.png: 128x6 px once resized, .* at least 16 px"):
        data.check_min_size(16)


@pytest.mark.parametrize("suffix", ["webp", "tiff", "bmp", "gif", "jpg", "png"])
def test_file_formats(tmp_path, suffix):
    pixels = np.zeros((16, 24, 3), np.uint8)
    pixels[..., 0], pixels[..., 2] = 200, 40
    Image.fromarray(pixels).save(tmp_path / f"image.{suffix}")
    image = load_image(tmp_path / f"image.{suffix}")
    assert image.shape == (3, 16, 24)
    torch.testing.assert_close(image.mean((1, 2)), torch.tensor([200, 0, 40]) / 255, atol=0.03, rtol=0)


def test_sixteen_bit_png_keeps_its_range(tmp_path):
    ramp = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    image = load_image(tmp_path / "deep.png")
    assert image.min() == 0 and image.max() == 1 and len(image[0].unique()) > 50


def test_two_pairs_with_the_same_name_are_refused(tmp_path, images):
    twin = write_image(tmp_path / "other" / "photo.jpg", seed=9)
    with pytest.raises(StyleTransferError, match="two pairs are both named 'photo__paint': rename one of the images"):
        PairDataModule([str(images["content"]), str(twin)], str(images["style"]))


def test_blend_pairs_every_content_with_all_styles(images):
    contents, styles = [str(images["content"]), str(images["content2"])], [str(images["style"]), str(images["style2"])]
    data = PairDataModule(contents, styles, pairing="blend", style_weights=[3, 1])
    assert data.names == ["photo__paint+paint2", "photo2__paint+paint2"]
    data.setup("fit")
    assert len(data.pairs[0].styles) == 2 and data.pairs[0].style_weights == (0.75, 0.25)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pairing": "blend", "style_weights": [1.0]}, "--data.style_weights must be 2 weights >= 0"),
        ({"pairing": "blend", "style_weights": [1.0, -1.0]}, "--data.style_weights must be 2 weights >= 0"),
        ({"pairing": "product", "style_weights": [1.0, 1.0]}, "--data.style_weights needs --data.pairing blend"),
    ],
)
def test_bad_blend_weights(images, kwargs, message):
    with pytest.raises(StyleTransferError, match=message):
        PairDataModule(str(images["content"]), [str(images["style"]), str(images["style2"])], **kwargs)
