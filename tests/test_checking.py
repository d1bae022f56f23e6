"""fastseq.gradcheck (keys with a d prefix, float32 refused, worst index reported) and
fastseq.check_against_reference (every backend against the reference, layers and functions)."""
import numpy as np
import pytest

import fastseq
from fastseq import functional as F

T, B, I, H = 4, 2, 3, 5


def rnn_fn(x, w_ih, w_hh):
    """The functional RNN in gradcheck's protocol, returning backward's own dict."""
    y, h_n, ctx = F.rnn_forward(x, w_ih, w_hh)
    return (y, h_n), lambda cot: F.rnn_backward(ctx, cot[0], cot[1])


def inputs(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((T, B, I)).astype(dtype),
            "w_ih": (0.5 * rng.standard_normal((H, I))).astype(dtype),
            "w_hh": (0.5 * rng.standard_normal((H, H))).astype(dtype)}


def test_gradcheck_accepts_backward_dict_and_reports_worst_index(active_backend):
    report = fastseq.gradcheck(rnn_fn, inputs())
    assert set(report) == {"x", "w_ih", "w_hh"}
    assert max(report.values()) < 1e-6
    d = report.details["w_hh"]
    assert len(d["index"]) == 2 and abs(d["analytic"] - d["numeric"]) < 1e-6


def test_gradcheck_names_the_worst_element():
    def wrong(x, w_ih, w_hh):
        outputs, vjp = rnn_fn(x, w_ih, w_hh)

        def bad_vjp(cot):
            grads = vjp(cot)
            grads["dw_hh"] = grads["dw_hh"].copy()
            grads["dw_hh"][3, 1] += 0.25
            return grads
        return outputs, bad_vjp

    with pytest.raises(fastseq.GradcheckError, match=r"w_hh: .* at index \(3, 1\)"):
        fastseq.gradcheck(wrong, inputs())
    report = fastseq.gradcheck(wrong, inputs(), raise_exception=False)
    assert report.details["w_hh"]["index"] == (3, 1)
    assert report["x"] < 1e-6


def test_gradcheck_missing_gradient_names_what_was_returned():
    def partial(x, w_ih, w_hh):
        outputs, vjp = rnn_fn(x, w_ih, w_hh)
        return outputs, lambda cot: {"dx": vjp(cot)["dx"]}

    with pytest.raises(fastseq.GradcheckError, match="w_ih"):
        fastseq.gradcheck(partial, inputs())


def test_gradcheck_refuses_float32_layer_with_reason():
    layer = fastseq.GRU(I, H, seed=0)  # float32: it casts gradcheck's float64 inputs back

    def fn(x):
        y, h_n = layer(x)

        def vjp(cot):
            layer.zero_grad()
            return {"dx": layer.backward(cot[0], cot[1])[0]}
        return (y, h_n), vjp

    with pytest.raises(TypeError, match="float32.*resolution.*check_against_reference"):
        fastseq.gradcheck(fn, {"x": np.zeros((T, B, I))})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls", [fastseq.RNN, fastseq.LSTM, fastseq.GRU])
def test_check_against_reference_whole_layer(cls, dtype):
    layer = cls(I, H, num_layers=2, bidirectional=True, dropout=0.3, batch_first=True,
                dtype=dtype, seed=1)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    results = fastseq.check_against_reference(layer, {"x": x, "lengths": [T, 2]})
    assert set(results) == set(fastseq.available_backends()) - {"reference"}
    for errors in results.values():
        expected = {"y", "h_n", "dx", "dh0"} | {f"{n}.grad" for n, _ in layer.named_parameters()}
        if cls is fastseq.LSTM:
            expected |= {"c_n", "dc0"}
        assert set(errors) == expected
        assert max(errors.values()) <= (1e-10 if dtype == np.float64 else 1e-4)


def test_check_against_reference_linear_and_function():
    lin = fastseq.Linear(3, 2, dtype=np.float64, seed=0)
    errors = fastseq.check_against_reference(lin, np.ones((4, 3)))
    assert all(set(e) == {"y", "dx", "weight.grad", "bias.grad"} for e in errors.values())
    results = fastseq.check_against_reference(rnn_fn, inputs(dtype=np.float32))
    for errors in results.values():
        assert {"output[0]", "output[1]", "dx", "dw_ih", "dw_hh", "dh0"} <= set(errors)
        assert max(errors.values()) <= 1e-4


def test_check_against_reference_flags_a_wrong_backend():
    state = {"calls": 0}

    def skewed(x, w_ih, w_hh):
        outputs, vjp = rnn_fn(x, w_ih, w_hh)
        if fastseq.get_backend() != "reference":
            outputs = (outputs[0] + 1e-3, outputs[1])
        state["calls"] += 1
        return outputs, vjp

    with pytest.raises(fastseq.GradcheckError, match=r"output\[0\]: .* > 1e-10 at index"):
        fastseq.check_against_reference(skewed, inputs())
    assert state["calls"] >= 2


def test_public_names():
    for name in ("gradcheck", "check_against_reference", "GradcheckError", "GradcheckReport"):
        assert name in fastseq.__all__ and hasattr(fastseq, name)
