"""Input specs: ``--input NAME:SHAPE[:DTYPE]`` and ``--input-shape SHAPE[:DTYPE]`` parsing, matching a factory's
forward, and random inputs that respect what each input means (ids in the vocabulary, masks that are masks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgestill.artifact import TensorSpec
from edgestill.errors import InputError
from edgestill.models.loading import InputShape, load_model, parse_input_shape, parse_input_spec
from edgestill.runtimes.runner import make_inputs


class TokenNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(30, 8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        h = self.embed(input_ids) * attention_mask.unsqueeze(-1)
        if token_type_ids is not None:
            h = h + token_type_ids.unsqueeze(-1)
        return self.head(h.mean(dim=1))


def token_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return TokenNet().eval()


FACTORY = "tests.models.test_input_specs:token_net"


def test_input_specs_infer_kind_dtype_and_symbolic_dims() -> None:
    """The name decides the kind (ids, mask, type_ids default to int64); S as dim 1 is a dynamic length; a dtype
    suffix is read on --input-shape too."""
    ids = parse_input_spec("input_ids:NxS", vocab_size=30)
    assert (ids.kind, ids.dtype, ids.high, ids.dynamic_batch, ids.dynamic_seq) == ("ids", "int64", 30, True, True)
    assert ids.tensor_spec().shape == ("batch", "seq") and str(ids) == "NxS"
    assert parse_input_spec("attention_mask:1x16").kind == "mask"
    assert parse_input_spec("token_type_ids:1x16:int32").dtype == "int32"
    assert (parse_input_spec("pixels:1x3x8x8").kind, parse_input_spec("segment:1x4:int64").kind) == ("float", "int")
    shape = parse_input_shape("1x3x224x224:int64")
    assert (shape.dims, shape.dtype, shape.kind) == ((1, 3, 224, 224), "int64", "int")


@pytest.mark.parametrize(("text", "message"), [
    ("1x128,1x128", "comma"),
    ("1x128:complex64", "dtype 'complex64'"),
    ("1xSxS", "only the batch"),
    ("Sx128", "only the batch"),
])
def test_bad_input_shapes_are_refused(text: str, message: str) -> None:
    """Bad inputs: two shapes in one option (a comma), an unknown dtype, S beyond dim 1, S as the batch."""
    with pytest.raises(InputError, match=message):
        parse_input_shape(text)


@pytest.mark.parametrize(("text", "message"), [
    ("input_ids", "not NAME:SHAPE"),
    ("1x128", "not NAME:SHAPE"),
    ("2ids:1x8", "not an input name"),
    ("input_ids:1x8:float99", "dtype"),
])
def test_bad_input_specs_are_refused(text: str, message: str) -> None:
    """Bad inputs: no shape, a shape alone, a name that is not an identifier, an unknown dtype."""
    with pytest.raises(InputError, match=message):
        parse_input_spec(text)


def test_factory_inputs_are_matched_to_the_forward_by_name() -> None:
    """Inputs given out of order reach the forward in its order; a trailing optional parameter may be left out."""
    loaded = load_model(FACTORY, input_shape=[parse_input_spec("attention_mask:1x8"),
                                              parse_input_spec("input_ids:1x8", vocab_size=30)])
    assert [s.name for s in loaded.input_shapes] == ["input_ids", "attention_mask"]
    ids, mask = loaded.example_inputs
    assert ids.dtype == torch.int64 and int(ids.max()) < 30 and set(mask.unique().tolist()) <= {0, 1}


@pytest.mark.parametrize(("shapes", "message"), [
    (["1x8:int64"], r"1 input\(s\) given.*missing attention_mask"),
    (["input_ids:1x8", "attention_mask:1x8", "token_type_ids:1x8", "extra:1x8"], "does not take"),
    (["input_ids:1x8", "mask:1x8"], r"'mask'.*forward takes \(input_ids, attention_mask, token_type_ids\)"),
    (["input_ids:1x8", "token_type_ids:1x8"], "attention_mask is missing"),
    (["input_ids:1x8", "input_ids:1x8"], "more than once"),
])
def test_inputs_the_forward_does_not_take_are_refused(shapes: list[str], message: str) -> None:
    """Bad inputs: one unnamed shape for a two-argument forward (the issue's case), a name too many, a name the forward
    does not take (the message lists its parameters), a gap in the positional order, a duplicate name."""
    specs = [parse_input_spec(s, vocab_size=30) if s.split(":")[0].isidentifier() else parse_input_shape(s) for s in shapes]
    with pytest.raises(InputError, match=message):
        load_model(FACTORY, input_shape=specs)


def test_token_options_apply_to_token_inputs_only() -> None:
    """--seq-len and --dynamic-length change the token inputs; without --vocab-size ids stay below 100; bad inputs:
    --seq-len for an image model, --vocab-size 0."""
    loaded = load_model(FACTORY, input_shape=[parse_input_spec("input_ids:1x8"), parse_input_spec("attention_mask:1x8")],
                        seq_len=12, dynamic_seq=True, vocab_size=30)
    assert [(s.dims, s.dynamic_seq) for s in loaded.input_shapes] == [((1, 12), True)] * 2
    with pytest.raises(InputError, match="--seq-len"):
        load_model("mobilenet_v2", seq_len=12)
    with pytest.raises(InputError, match="--vocab-size"):
        load_model(FACTORY, input_shape=[parse_input_spec("input_ids:1x8"), parse_input_spec("attention_mask:1x8")],
                   vocab_size=0)


def test_random_samples_respect_each_inputs_meaning() -> None:
    """ids lie in [0, vocabulary); masks are ones then a zero tail with at least one 1; token types are zeros."""
    ids = InputShape(dims=(1, 32), dtype="int64", kind="ids", low=0, high=7).samples(200, seed=1)
    assert ids.min() >= 0 and ids.max() == 6
    mask = InputShape(dims=(1, 32), dtype="int64", kind="mask").samples(200, seed=1)
    assert set(np.unique(mask)) == {0, 1} and (mask[:, 0] == 1).all()
    assert (np.diff(mask, axis=1) <= 0).all()  # never a 1 after a 0: a padded tail
    assert len({int(r.sum()) for r in mask}) > 5  # the tail's length varies
    assert not InputShape(dims=(1, 32), dtype="int64", kind="type_ids").samples(10).any()


def test_timing_inputs_respect_kinds_and_old_manifests_keep_zero_or_one() -> None:
    """The runner's random inputs follow each spec's kind and a text artifact's length for a symbolic sequence; a spec
    without kind (an older manifest) keeps integers in {0, 1}."""
    specs = [TensorSpec(name="input_ids", shape=("batch", "seq"), dtype="int32", logical_dtype="int64", kind="ids", high=50),
             TensorSpec(name="attention_mask", shape=(1, "seq"), dtype="int64", kind="mask"),
             TensorSpec(name="token_type_ids", shape=(1, "seq"), dtype="int64", kind="type_ids")]
    feed = make_inputs(specs, "random", 0, seq_len=24)
    assert feed["input_ids"].shape == (1, 24) and feed["input_ids"].dtype == np.int64 and feed["input_ids"].max() < 50
    assert feed["attention_mask"][0, 0] == 1 and (np.diff(feed["attention_mask"], axis=1) <= 0).all()
    assert not feed["token_type_ids"].any()
    old = make_inputs([TensorSpec(name="ids", shape=(1, 64), dtype="int64")], "random", 0)
    assert set(np.unique(old["ids"])) <= {0, 1}
