"""Reading an image file: sizes, orientation, modes, transparency, formats, bit depth, colour profiles and damage."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_style import StyleTransferError, load_image

from helpers import write_image


def test_resize_keeps_aspect_ratio(tmp_path):
    image = load_image(write_image(tmp_path / "a.png", size=(200, 100)), long_side=64)
    assert image.shape == (3, 32, 64) and image.dtype == torch.float32
    assert image.min() >= 0 and image.max() <= 1


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


def test_truncated_image_is_refused(tmp_path, images):
    data = images["content"].read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(StyleTransferError, match="cut.png: truncated or corrupt image"):
        load_image(tmp_path / "cut.png", role="content")


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


def adobe_rgb_profile() -> bytes:
    """A minimal ICC v2 matrix/TRC profile with Adobe RGB (1998)'s primaries and gamma (563/256), D50-adapted."""
    import struct

    def xyz(x, y, z):
        return b"XYZ " + bytes(4) + struct.pack(">3i", *(round(v * 65536) for v in (x, y, z)))

    text = b"Adobe RGB (1998) compatible, for tests"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text) + 1) + text + b"\x00" + bytes(4 + 4 + 2 + 1 + 67)
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, 563) + bytes(2)
    tags = [(b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)), (b"rXYZ", xyz(0.60974, 0.31111, 0.01947)),
            (b"gXYZ", xyz(0.20528, 0.62567, 0.06087)), (b"bXYZ", xyz(0.14919, 0.06322, 0.74457)),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve), (b"cprt", b"text" + bytes(4) + b"CC0\x00")]
    offset, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for signature, body in tags:
        body += bytes(-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ " + bytes(12) + b"acsp"
              + bytes(24) + bytes(4)
              + struct.pack(">3i", *(round(v * 65536) for v in (0.9642, 1.0, 0.8249))) + bytes(48))
    return header + struct.pack(">I", len(tags)) + table + data


def test_colour_profiles_are_converted_to_srgb(tmp_path):
    from PIL import ImageCms

    profile = adobe_rgb_profile()
    srgb, adobe = ImageCms.createProfile("sRGB"), ImageCms.ImageCmsProfile(io.BytesIO(profile))
    red = Image.new("RGB", (16, 16), (230, 30, 30))
    stored = ImageCms.profileToProfile(red, srgb, adobe)  # what an Adobe RGB camera file holds for this red
    assert np.abs(np.asarray(stored)[0, 0].astype(int) - (197, 34, 35)).max() <= 3  # as the issue measured
    stored.save(tmp_path / "adobe.jpg", icc_profile=profile, quality=100)
    read = load_image(tmp_path / "adobe.jpg")
    torch.testing.assert_close(read[:, 8, 8] * 255, torch.tensor([230.0, 30.0, 30.0]), atol=3, rtol=0)
    stored.save(tmp_path / "plain.jpg", quality=100)  # the same numbers without the profile: taken as sRGB
    assert (load_image(tmp_path / "plain.jpg")[0, 8, 8] * 255 - 197).abs() < 3


def test_a_broken_colour_profile_is_ignored_with_a_warning(tmp_path):
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "odd.png", icc_profile=b"not a profile")
    with pytest.warns(UserWarning, match=r"odd.png: ignoring its colour profile"):
        image = load_image(tmp_path / "odd.png", role="content")
    assert (image[0] * 255 - 200).abs().max() < 1
