"""arsam.fashion_mnist: the split on a small slice (shapes, dtypes, labels, normalization, the
seeded and exact label noise), its argument checks, prepare() and the CLI of `make data`.

The tests that read the images need the files in the default root ($ARSAM_DATA, else data/ of
this checkout, written by `make data`, which `make test` runs first); the Debian test needs the
package dataset-fashion-mnist. They skip, saying so, where the files are absent."""
import gzip
import os
import os.path as osp

import pytest
import torch

from arsam import fashion_mnist as fm

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
needs_data = pytest.mark.skipif(
    not fm.available(), reason=f"Fashion-MNIST is not in {fm.raw_folder()!r}: run `make data` "
    "(or point ARSAM_DATA at a root holding FashionMNIST/raw)")
needs_debian = pytest.mark.skipif(
    not all(osp.isfile(osp.join(fm.DEBIAN_DIR, f + ".gz")) for f in fm.FILES),
    reason=f"Debian's dataset-fashion-mnist is not installed ({fm.DEBIAN_DIR})")
TRAIN, TEST = 300, 100


@pytest.fixture(scope="module")
def raw():
    """The whole splits as torchvision reads them: uint8 images and int64 labels."""
    return fm.load(train=True), fm.load(train=False)


def test_default_root_is_arsam_data_else_data_of_the_checkout(monkeypatch):
    monkeypatch.setenv("ARSAM_DATA", "/somewhere/else")
    assert fm.default_root() == "/somewhere/else"
    assert fm.raw_folder() == "/somewhere/else/FashionMNIST/raw"
    monkeypatch.delenv("ARSAM_DATA")
    assert fm.default_root() == osp.join(ROOT, "data")  # wherever pytest runs from


@needs_data
def test_split_shapes_dtypes_labels_and_normalization(raw):
    (x_all, y_all), (xt_all, yt_all) = raw
    assert x_all.shape == (60000, 28, 28) and xt_all.shape == (10000, 28, 28)
    assert x_all.dtype == torch.uint8 and y_all.dtype == torch.int64
    x, y, xt, yt = fm.load_fashion_mnist_split(train_size=TRAIN, test_size=TEST, seed=3)
    assert x.shape == (TRAIN, 1, 28, 28) and xt.shape == (TEST, 1, 28, 28)
    assert x.dtype == xt.dtype == torch.float32 and y.dtype == yt.dtype == torch.int64
    assert y.shape == (TRAIN,) and yt.shape == (TEST,)
    assert 0 <= int(y.min()) and int(y.max()) <= 9 and set(yt.tolist()) <= set(range(10))
    # the first n of a permutation drawn with the seed, train first, normalized by MEAN, STD
    g = torch.Generator().manual_seed(3)
    keep, keep_test = torch.randperm(60000, generator=g)[:TRAIN], torch.randperm(
        10000, generator=g)[:TEST]
    torch.testing.assert_close(x[:, 0], (x_all[keep].float() / 255 - fm.MEAN) / fm.STD,
                               rtol=0, atol=1e-6)
    torch.testing.assert_close(xt[:, 0], (xt_all[keep_test].float() / 255 - fm.MEAN) / fm.STD,
                               rtol=0, atol=1e-6)
    assert torch.equal(y, y_all[keep]) and torch.equal(yt, yt_all[keep_test])


@needs_data
def test_mean_and_std_are_the_training_sets(raw):
    (x_all, _), _ = raw
    pixels = x_all.double() / 255
    assert abs(pixels.mean().item() - fm.MEAN) < 5e-5
    assert abs(pixels.std().item() - fm.STD) < 5e-5


@needs_data
def test_the_whole_split_by_default():
    x, y, xt, yt = fm.load_fashion_mnist_split()
    assert (len(y), len(yt)) == (60000, 10000)
    assert torch.bincount(y).tolist() == [6000] * 10 and torch.bincount(yt).tolist() == [1000] * 10


@needs_data
@pytest.mark.parametrize("noise", [0.0, 0.4, 0.6, 0.999])
def test_label_noise_is_exact_and_seeded(noise):
    x0, clean, xt0, yt0 = fm.load_fashion_mnist_split(train_size=TRAIN, test_size=TEST, seed=5)
    x, noisy, xt, yt = fm.load_fashion_mnist_split(train_size=TRAIN, test_size=TEST,
                                                   noise=noise, seed=5)
    assert torch.equal(x, x0) and torch.equal(xt, xt0) and torch.equal(yt, yt0)  # labels only
    flipped = noisy != clean
    assert int(flipped.sum()) == round(noise * TRAIN)  # every drawn label moved to another class
    assert 0 <= int(noisy.min()) and int(noisy.max()) <= 9
    again = fm.load_fashion_mnist_split(train_size=TRAIN, test_size=TEST, noise=noise, seed=5)[1]
    assert torch.equal(again, noisy)
    if noise:
        other = fm.load_fashion_mnist_split(train_size=TRAIN, test_size=TEST, noise=noise,
                                            seed=6)
        assert not torch.equal(other[1], noisy)


@pytest.mark.parametrize("kwargs, message", [
    (dict(noise=1.0), "noise must be in [0, 1), got 1.0"),
    (dict(noise=-0.1), "noise must be in [0, 1), got -0.1"),
    (dict(noise="0.4"), "noise must be in [0, 1), got '0.4'"),
    (dict(noise=True), "noise must be in [0, 1), got True"),
    (dict(train_size=0), "train_size must be None or an int in [1, 60000], got 0"),
    (dict(train_size=60001), "train_size must be None or an int in [1, 60000], got 60001"),
    (dict(train_size=2.5), "train_size must be None or an int in [1, 60000], got 2.5"),
    (dict(test_size=10001), "test_size must be None or an int in [1, 10000], got 10001"),
    (dict(test_size=True), "test_size must be None or an int in [1, 10000], got True")])
def test_bad_arguments_are_refused_before_reading(kwargs, message, tmp_path):
    # an empty root: the arguments are checked before any file is looked for
    with pytest.raises(ValueError) as err:
        fm.load_fashion_mnist_split(str(tmp_path), **kwargs)
    assert str(err.value) == message


def test_absent_files_name_make_data(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        fm.load_fashion_mnist_split(str(tmp_path), train_size=10)
    assert str(err.value) == (
        f"Fashion-MNIST is not under {osp.join(str(tmp_path), 'FashionMNIST', 'raw')!r} and not "
        f"in {fm.DEBIAN_DIR!r}: run `make data` (as root it installs Debian's package "
        "dataset-fashion-mnist; elsewhere torchvision downloads it, which needs network)")


def fake_source(folder, files=fm.FILES):
    """A folder of gzipped files named as Debian's package names them, each of distinct bytes
    (prepare() unpacks them and parses nothing)."""
    os.makedirs(folder, exist_ok=True)
    contents = {}
    for i, name in enumerate(files):
        contents[name] = bytes(range(i, i + 50)) * 3
        with gzip.open(osp.join(folder, name + ".gz"), "wb") as f:
            f.write(contents[name])
    return contents


def test_prepare_unpacks_the_source_into_torchvisions_layout_once(tmp_path):
    contents = fake_source(tmp_path / "source")
    root = str(tmp_path / "root")
    raw_folder = fm.prepare(root, str(tmp_path / "source"), download=False)
    assert raw_folder == osp.join(root, "FashionMNIST", "raw") and fm.available(root)
    assert sorted(os.listdir(raw_folder)) == sorted(fm.FILES)  # no .part left behind
    for name, data in contents.items():
        assert open(osp.join(raw_folder, name), "rb").read() == data
    os.utime(osp.join(raw_folder, fm.FILES[0]), (0, 0))
    assert fm.prepare(root, str(tmp_path / "nowhere"), download=False) == raw_folder
    assert os.stat(osp.join(raw_folder, fm.FILES[0])).st_mtime == 0  # already there: untouched


def test_prepare_with_an_incomplete_source_writes_nothing(tmp_path):
    fake_source(tmp_path / "source", fm.FILES[:3])
    root = tmp_path / "root"
    with pytest.raises(FileNotFoundError, match="run `make data`"):
        fm.prepare(str(root), str(tmp_path / "source"), download=False)
    assert not root.exists()


def test_prepare_says_what_would_work_when_the_download_fails(tmp_path, monkeypatch):
    import torchvision.datasets

    class Offline:
        def __init__(self, root, train, download):
            assert download
            raise RuntimeError("no network")
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", Offline)
    with pytest.raises(FileNotFoundError) as err:
        fm.prepare(str(tmp_path / "root"), str(tmp_path / "empty"))
    assert str(err.value).endswith("which needs network) (download failed: no network)")


@needs_debian
def test_prepare_from_the_debian_package(tmp_path):
    raw_folder = fm.prepare(str(tmp_path), download=False)
    for name in fm.FILES:
        with gzip.open(osp.join(fm.DEBIAN_DIR, name + ".gz"), "rb") as f:
            assert open(osp.join(raw_folder, name), "rb").read() == f.read()
    x, y, xt, yt = fm.load_fashion_mnist_split(str(tmp_path), train_size=TRAIN, test_size=TEST)
    assert x.shape == (TRAIN, 1, 28, 28) and len(yt) == TEST


def test_cli_without_any_source_fails_clearly(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = fm.main(["--root", str(tmp_path / "root"), "--source", str(tmp_path / "empty"),
                    "--no-download"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err == (f"error: Fashion-MNIST is not under "
                   f"{osp.join(str(tmp_path / 'root'), 'FashionMNIST', 'raw')!r} and not in "
                   f"{str(tmp_path / 'empty')!r}: run `make data` (as root it installs Debian's "
                   "package dataset-fashion-mnist; elsewhere torchvision downloads it, which "
                   "needs network)\n")
    assert not (tmp_path / "root").exists()


def test_cli_prints_the_raw_folder(tmp_path, capsys):
    fake_source(tmp_path / "source")
    assert fm.main(["--root", str(tmp_path / "root"), "--source", str(tmp_path / "source")]) == 0
    assert capsys.readouterr().out == osp.join(str(tmp_path / "root"), "FashionMNIST", "raw") + "\n"
