"""Shared fixtures of the distillation tests: the quick digits set, tiny seeded models, a briefly trained teacher."""

import pytest
import torch

from edgestill.compress.distill.trainer import TrainConfig, train
from edgestill.data import load_dataset
from edgestill.models import create_model

STUDENT_KWARGS = {"width_mult": 0.25, "last_channels": 32, "blocks": [[1, 8, 1, 1], [4, 16, 1, 2]]}
TEACHER_KWARGS = {"width": 8, "blocks": [1, 1]}


@pytest.fixture(scope="session")
def digits():
    torch.set_num_threads(2)
    return load_dataset("digits", seed=0, size="quick")


def make_student(data, seed=0):
    return create_model("mobilenetv2-student", num_classes=data.num_classes, in_channels=data.input_shape[0], seed=seed,
                        **STUDENT_KWARGS)


def make_teacher(data, seed=0, num_classes=None):
    return create_model("resnet-teacher", num_classes=num_classes or data.num_classes, in_channels=data.input_shape[0],
                        seed=seed, **TEACHER_KWARGS)


LEARN = TrainConfig(epochs=5, batch_size=32, lr=0.01, optimizer="adamw", weight_decay=0.01)


@pytest.fixture(scope="session")
def digits_trained(digits):
    """A resnet-teacher trained for 5 epochs on the quick digits set, and every progress call it made."""
    calls = []
    result = train(make_teacher(digits), digits, LEARN, progress=lambda *a: calls.append(a))
    return result, calls


@pytest.fixture(scope="session")
def digits_teacher(digits_trained):
    return digits_trained[0].model
