"""What training added over the random init, from one run's predictions: the paired bootstrap over test models
calls a clear gain "added", a difference inside the test models' noise "nothing measurable", a loss "lost"."""

import numpy as np
import pandas as pd
import pytest

from weightspace.downstream.training_gain import gain_sentence, training_gain


def predictions(truth: np.ndarray, prediction: np.ndarray, target: str = "test_acc") -> pd.DataFrame:
    n = len(truth)
    return pd.DataFrame({"feature_set": "embedding", "probe": "linear", "target": target, "split": "test",
                         "row": np.arange(n), "model_id": np.arange(n) // 2, "epoch": np.arange(n) % 2,
                         "truth": truth, "prediction": prediction})


@pytest.fixture
def truth():
    return np.random.default_rng(0).normal(size=200)


def test_a_clear_gain_is_added_and_its_interval_holds_it(truth):
    noise = np.random.default_rng(1).normal(size=truth.size)
    trained, init = predictions(truth, truth + 0.3 * noise), predictions(truth, 0.2 * truth + noise)
    gain = training_gain(trained, init, {"test_acc": "regression"}).iloc[0]
    r2 = lambda p: 1 - np.square(truth - p).sum() / np.square(truth - truth.mean()).sum()  # noqa: E731
    assert gain.gain == pytest.approx(r2(truth + 0.3 * noise) - r2(0.2 * truth + noise))
    assert gain.verdict == "added" and 0 < gain.low < gain.gain < gain.high and gain.models == 100
    lost = training_gain(init, trained, {"test_acc": "regression"}).iloc[0]
    assert lost.verdict == "lost" and lost.gain == pytest.approx(-gain.gain)


def test_a_difference_inside_the_noise_is_nothing_measurable(truth):
    rng = np.random.default_rng(2)
    a, b = truth + rng.normal(size=truth.size), truth + rng.normal(size=truth.size)  # equally good, differently wrong
    gain = training_gain(predictions(truth, a), predictions(truth, b), {"test_acc": "regression"}).iloc[0]
    assert gain.gain != 0 and gain.low < 0 < gain.high and gain.verdict == "nothing measurable"
    same = training_gain(predictions(truth, a), predictions(truth, a), {"test_acc": "regression"}).iloc[0]
    assert (same.gain, same.low, same.high) == (0, 0, 0) and same.verdict == "nothing measurable"
    assert "nothing measurable" in gain_sentence(pd.DataFrame([gain]))


def test_classes_score_accuracy_and_other_rows_are_refused():
    truth = np.array(["relu", "tanh"] * 50, dtype=object)
    right, coin = truth.copy(), np.where(np.arange(100) % 4 < 2, "relu", "tanh").astype(object)
    gain = training_gain(predictions(truth, right, "activation"), predictions(truth, coin, "activation"),
                         {"activation": "classification"}).iloc[0]
    assert gain.metric == "accuracy" and gain.trained == 1.0 and gain.init == 0.5 and gain.verdict == "added"
    shifted = predictions(truth, coin, "activation").assign(row=lambda t: t.row + 1)
    with pytest.raises(ValueError, match="other rows"):
        training_gain(predictions(truth, right, "activation"), shifted, {"activation": "classification"})


def test_the_sentence_says_when_the_random_init_was_kept():
    gains = pd.DataFrame([{"target": "epoch", "metric": "r2", "init": 0.5, "trained": 0.5, "gain": 0.0, "low": 0.0,
                           "high": 0.0, "models": 30, "verdict": "nothing measurable"}])
    assert gain_sentence(gains, selected_untrained=True).startswith("Training added nothing")
    assert gain_sentence(gains.iloc[:0]) == ""
