"""fl.training.model: a model's parameters as one flat float32 vector, and back (torch modules
and the numpy linear model)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

from fl.training.data import load_dataset
from fl.training.linear import LinearModel
from fl.training.model import Model, ModelVector, make_model, num_params
from secagg.errors import ConfigError


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))


MLP_SIZE = 5 * 4 + 4 + 4 * 3 + 3


def _logits(model: Model, x: np.ndarray) -> np.ndarray:
    if isinstance(model, LinearModel):
        return model(x)
    with torch.no_grad():
        out: np.ndarray = model(torch.from_numpy(x)).numpy()
    return out


def test_num_params_counts_every_scalar() -> None:
    assert num_params(_mlp()) == MLP_SIZE
    assert len(ModelVector(_mlp())) == MLP_SIZE
    assert ModelVector(_mlp()).shapes == ((4, 5), (4,), (3, 4), (3,))


def test_layout_is_parameters_flattened_in_order() -> None:
    model = _mlp()
    expected = torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()
    vec = ModelVector(model).to_vector()
    assert vec.dtype == np.float32
    assert vec.shape == (MLP_SIZE,)
    np.testing.assert_array_equal(vec, expected)


def test_round_trip_into_another_model_is_exact() -> None:
    src, dst = _mlp(seed=1), _mlp(seed=2)
    vec = ModelVector(src).to_vector().copy()
    ModelVector(dst).from_vector(vec)
    for a, b in zip(src.parameters(), dst.parameters()):
        assert torch.equal(a, b)
    x = torch.randn(7, 5)
    assert torch.equal(src(x), dst(x))
    np.testing.assert_array_equal(ModelVector(dst).to_vector(), vec)


@settings(deadline=None)
@given(
    arrays(
        np.float32,
        MLP_SIZE,
        elements=st.floats(width=32, allow_nan=False, allow_infinity=False),
    )
)
def test_any_finite_float32_vector_round_trips_bit_for_bit(vec: np.ndarray) -> None:
    mv = ModelVector(_mlp())
    mv.from_vector(vec)
    out = mv.to_vector()
    assert out.tobytes() == vec.tobytes()


def test_buffer_is_reused_across_calls() -> None:
    model = _mlp()
    mv = ModelVector(model)
    first = mv.to_vector()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    second = mv.to_vector()
    assert second is first  # same preallocated buffer, refilled
    mv.from_vector(np.zeros(MLP_SIZE, dtype=np.float32))
    assert mv.to_vector() is first
    assert not first.any()


def test_to_vector_fills_a_given_out_array() -> None:
    mv = ModelVector(_mlp())
    out = np.full(MLP_SIZE, np.nan, dtype=np.float32)
    got = mv.to_vector(out=out)
    assert got is out
    np.testing.assert_array_equal(out, mv.to_vector())
    assert not np.shares_memory(out, mv.to_vector())


def test_from_vector_changes_the_model_outputs() -> None:
    model = nn.Linear(3, 2)
    mv = ModelVector(model)
    # weight (2x3) row-major, then bias (2)
    mv.from_vector(np.array([1, 0, 0, 0, 1, 0, 10, 20], dtype=np.float32))
    y = model(torch.tensor([[2.0, 3.0, 4.0]]))
    assert y.tolist() == [[12.0, 23.0]]


def test_float64_input_is_rounded_to_float32() -> None:
    mv = ModelVector(_mlp())
    vec64 = np.linspace(-1, 1, MLP_SIZE)
    mv.from_vector(vec64)
    np.testing.assert_array_equal(mv.to_vector(), vec64.astype(np.float32))


def test_size_mismatch_names_both_sizes() -> None:
    mv = ModelVector(_mlp())
    with pytest.raises(ConfigError, match=rf"\b{MLP_SIZE - 1}\b.*\b{MLP_SIZE}\b"):
        mv.from_vector(np.zeros(MLP_SIZE - 1, dtype=np.float32))
    with pytest.raises(ConfigError, match=rf"\b{MLP_SIZE + 3}\b.*\b{MLP_SIZE}\b"):
        mv.to_vector(out=np.zeros(MLP_SIZE + 3, dtype=np.float32))
    with pytest.raises(ValueError):  # ConfigError is also a ValueError
        mv.from_vector(np.zeros((1, MLP_SIZE), dtype=np.float32))


def test_bad_vectors_are_refused_and_leave_the_model_alone() -> None:
    model = _mlp()
    mv = ModelVector(model)
    before = mv.to_vector().copy()
    with pytest.raises(TypeError):
        mv.from_vector(np.zeros(MLP_SIZE, dtype=np.int64))
    bad = np.zeros(MLP_SIZE, dtype=np.float32)
    bad[3] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        mv.from_vector(bad)
    with pytest.raises(TypeError):
        mv.to_vector(out=np.zeros(MLP_SIZE, dtype=np.float64))
    np.testing.assert_array_equal(mv.to_vector(), before)


def test_model_without_parameters_is_refused() -> None:
    with pytest.raises(ConfigError):
        ModelVector(nn.ReLU())


def test_shared_parameters_count_once() -> None:
    layer = nn.Linear(4, 4)
    model = nn.Sequential(layer, nn.ReLU(), layer)
    assert num_params(model) == 20
    mv = ModelVector(model)
    mv.from_vector(np.arange(20, dtype=np.float32))
    assert layer.bias.tolist() == [16.0, 17.0, 18.0, 19.0]


@pytest.mark.parametrize(
    ("name", "kind"), [("breast_cancer", None), ("digits", None), ("digits", "cnn")]
)
def test_every_model_kind_round_trips(name: str, kind: str | None) -> None:
    ds = load_dataset(name)
    a, b = make_model(ds, kind=kind, seed=1), make_model(ds, kind=kind, seed=2)
    va, vb = ModelVector(a), ModelVector(b)
    assert not np.array_equal(va.to_vector(), vb.to_vector())
    vb.from_vector(va.to_vector())
    x = ds.x_test[:5]
    assert np.array_equal(_logits(a, x), _logits(b, x))


# fl.training.model: make_model


def test_default_models_are_small_and_fit_the_data() -> None:
    sizes = {}
    for name in ("breast_cancer", "digits"):
        ds = load_dataset(name)
        model = make_model(ds)
        logits = _logits(model, ds.x_test)
        assert logits.shape == (ds.n_test, ds.n_classes)
        sizes[name] = num_params(model)
    assert sizes == {"breast_cancer": 30 * 2 + 2, "digits": 64 * 32 + 32 + 32 * 10 + 10}


def test_make_model_accepts_a_name_and_hidden_widths() -> None:
    model = make_model("breast_cancer", hidden=(8, 4))
    assert num_params(model) == 30 * 8 + 8 + 8 * 4 + 4 + 4 * 2 + 2
    assert num_params(make_model("breast_cancer", hidden=0)) == 62


def test_make_model_is_seeded_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a = ModelVector(make_model("digits", seed=5)).to_vector().copy()
    assert torch.equal(torch.rand(1), expected)
    b = ModelVector(make_model("digits", seed=5)).to_vector()
    np.testing.assert_array_equal(a, b)


def test_make_model_refuses_what_cannot_work() -> None:
    with pytest.raises(ConfigError, match="linear.*mlp.*cnn"):
        make_model("digits", kind="transformer")
    with pytest.raises(ConfigError, match="image"):
        make_model("breast_cancer", kind="cnn")
    with pytest.raises(ConfigError, match="hidden"):
        make_model("breast_cancer", hidden=(8, -1))
    with pytest.raises(ConfigError, match="hidden"):
        make_model("breast_cancer", hidden=4, kind="linear")
    with pytest.raises(ConfigError, match="breast_cancer.*digits.*synthetic"):
        make_model("mnist")


# the numpy linear model


def test_the_linear_model_is_torch_nn_linear_in_numpy() -> None:
    """Same layout (weights row-major, then biases), same logits, torch's initial range."""
    ds = load_dataset("breast_cancer")
    model = make_model(ds, seed=7)
    assert isinstance(model, LinearModel)
    vec = ModelVector(model).to_vector()
    bound = 1 / np.sqrt(ds.n_features)
    assert vec.dtype == np.float32 and np.abs(vec).max() <= bound
    ref = nn.Linear(ds.n_features, ds.n_classes)
    ModelVector(ref).from_vector(vec)
    np.testing.assert_array_equal(ref.weight.detach().numpy(), model.weight)
    np.testing.assert_array_equal(ref.bias.detach().numpy(), model.bias)
    np.testing.assert_allclose(_logits(model, ds.x_test), _logits(ref, ds.x_test),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ModelVector(make_model(ds, seed=7)).to_vector(), vec)
    assert not np.array_equal(ModelVector(make_model(ds, seed=8)).to_vector(), vec)


def test_the_linear_model_vector_round_trips_and_its_views_follow() -> None:
    model = make_model("diabetes", seed=0)
    assert isinstance(model, LinearModel) and num_params(model) == 22
    mv = ModelVector(model)
    mv.from_vector(np.arange(22, dtype=np.float64))
    assert model.bias.tolist() == [20.0, 21.0]
    assert model.weight[1, 0] == 10.0
    out = np.empty(22, dtype=np.float32)
    assert mv.to_vector(out) is out
    np.testing.assert_array_equal(out, np.arange(22))
    with pytest.raises(ConfigError, match="22 parameters"):
        mv.from_vector(np.zeros(21, dtype=np.float32))


def test_a_linear_model_is_built_and_trained_without_torch() -> None:
    code = ("import sys\n"
            "from fl.training.data import load_dataset\n"
            "from fl.training.fedavg import evaluate, local_train\n"
            "from fl.training.model import make_model\n"
            "ds = load_dataset('breast_cancer')\n"
            "m = make_model(ds)\n"
            "local_train(m, ds.split_iid(4, seed=0)[0], epochs=2)\n"
            "print(evaluate(m, ds.test)['accuracy'] > 0.5, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "False"]


_NO_TORCH = '''
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Block())
'''


def test_without_torch_the_linear_run_works_and_a_net_is_one_typed_line(tmp_path) -> None:
    """torch is the fl extra's: with it absent, the default run still trains, and asking
    for a torch model says which extra provides it instead of a traceback."""
    code = _NO_TORCH + (
        "import fl.cli\n"
        f"print(fl.cli.main(['run', '--rounds', '1', '--clients', '6', '--seed', '1', "
        f"'--out', {str(tmp_path / 'a')!r}]))\n"
        f"print(fl.cli.main(['run', '--model', 'mlp', '--rounds', '1', '--clients', '6', "
        f"'--out', {str(tmp_path / 'b')!r}]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split()[-2:] == ["0", "2"], out.stdout[-400:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("secagg: error:")]
    assert errors == ["secagg: error: the mlp model needs torch: pip install 'secagg[fl]'; "
                      "the linear model does not (--model linear, the default on "
                      "breast_cancer and diabetes)"], out.stderr[-600:]
    assert not (tmp_path / "b").exists()  # refused before the report folder was made
