import lightning as L
import pytest
import torch
from torch.utils.data import Dataset

from visdet.data.classification_datamodule import ClassificationDataModule


class Toy(Dataset):
    """Item i: a [3, 4, 4] image filled with i, label i % 3."""

    def __init__(self, n=20, classes=("a", "b", "c")):
        self.n, self.classes = n, list(classes)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.full((3, 4, 4), float(i)), torch.tensor(i % 3)


def ids(loader):
    return [int(x) for images, _ in loader for x in images[:, 0, 0, 0]]


def test_split_sizes_determinism_and_no_overlap():
    dm = ClassificationDataModule(Toy(20), val_fraction=0.25, batch_size=4, seed=1)
    dm.setup("fit")
    train, val = ids(dm.train_dataloader()), ids(dm.val_dataloader())
    assert len(train) == 15 and len(val) == 5
    assert sorted(train + val) == list(range(20))
    assert val == sorted(val)  # validation is not shuffled
    again = ClassificationDataModule(Toy(20), val_fraction=0.25, batch_size=4, seed=1)
    assert ids(again.val_dataloader()) == val and ids(again.train_dataloader()) == train
    other = ClassificationDataModule(Toy(20), val_fraction=0.25, batch_size=4, seed=2)
    assert ids(other.val_dataloader()) != val
    assert dm.classes == ["a", "b", "c"] and dm.num_classes == 3  # through the Subset


def test_batches_and_shuffle():
    dm = ClassificationDataModule(Toy(10), val=Toy(7), batch_size=4)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 4, 4) and labels.shape == (4,) and labels.dtype == torch.int64
    assert torch.equal(labels, images[:, 0, 0, 0].long() % 3)
    train = ids(dm.train_dataloader())
    assert sorted(train) == list(range(10)) and train != list(range(10))
    assert ids(dm.val_dataloader()) == list(range(7))
    assert [len(b[1]) for b in dm.val_dataloader()] == [4, 3]


def test_factories_are_built_in_setup():
    built = []

    def make():
        built.append(1)
        return Toy(6)

    dm = ClassificationDataModule(make, val=make)
    assert built == []
    dm.setup("fit")
    dm.setup("validate")
    assert len(built) == 2 and dm.num_classes == 3


def test_no_validation_set(tmp_path):
    dm = ClassificationDataModule(Toy(6), batch_size=2)
    assert dm.val_dataloader() == []

    class Linear(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(48, 3)

        def training_step(self, batch, _):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.head(x.flatten(1)), y)

        def validation_step(self, batch, _):
            raise AssertionError("no validation data was given")

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(Linear(), dm)
    assert trainer.global_step == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"num_workers": -1}, "num_workers"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": -0.1}, "val_fraction"),
        ({"val_fraction": 0.2, "val": Toy(3)}, "val_fraction"),
    ],
)
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClassificationDataModule(Toy(5), **kwargs)


def test_dataset_errors():
    with pytest.raises(TypeError, match="data.train"):
        ClassificationDataModule(42)
    with pytest.raises(ValueError, match="data.train is empty"):
        ClassificationDataModule(Toy(0)).setup()
    with pytest.raises(ValueError, match="data.val is empty"):
        ClassificationDataModule(Toy(4), val=Toy(0)).setup()
    with pytest.raises(ValueError, match="leaves no training data"):
        ClassificationDataModule(Toy(1), val_fraction=0.5).setup()
    with pytest.raises(ValueError, match="classes"):
        ClassificationDataModule(Toy(4), val=Toy(4, classes=("a", "b"))).setup()
    no_classes = torch.utils.data.TensorDataset(torch.zeros(2, 3, 4, 4), torch.zeros(2).long())
    with pytest.raises(TypeError, match="no 'classes'"):
        ClassificationDataModule(no_classes).setup()
