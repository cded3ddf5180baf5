"""The preconditioned logistic solver minimizes scikit-learn's objective: the same optimum, binary and
multinomial, and the probe's C path picks what scikit-learn's lbfgs path picks on wide features."""

import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import weightspace.downstream.probes as probes
from weightspace.downstream.logistic import fit_logistic
from weightspace.downstream.probes import LogisticProbe


def classes_data(n=300, d=12, k=3, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))  # correlated features: an ill-conditioned problem
    X = (X - X.mean(0)) / X.std(0)
    logits = scale * X @ rng.normal(size=(d, k))
    y = np.array([rng.choice(k, p=np.exp(r - r.max()) / np.exp(r - r.max()).sum()) for r in logits])
    return X, y


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("C", [0.01, 1.0])
def test_same_optimum_as_scikit_learn(k, C):
    X, y = classes_data(k=k)
    # both solved far below the default tolerance: what remains is the optimum itself
    ref = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(X, y)
    coef, intercept, n_iter = fit_logistic(X, y, k, C, tol=1e-10, max_iter=10000)
    assert n_iter < 10000
    # the objective is strongly convex (modulus >= 1 / (C n)): gradients below 1e-10 pin the coefficients to
    # within 1e-10 * C * n, 3e-6 at C = 1; compare at 1e-5 relative to their size
    scale = np.abs(ref.coef_).max()
    np.testing.assert_allclose(coef.T, ref.coef_, atol=1e-5 * scale)
    model = LogisticRegression()
    model.classes_, model.coef_, model.intercept_ = ref.classes_, coef.T, intercept
    if k > 2:  # the multinomial intercepts are defined up to a common shift; scikit-learn centres them
        intercept = intercept - intercept.mean()
    np.testing.assert_allclose(intercept, ref.intercept_, atol=1e-5 * max(1.0, np.abs(ref.intercept_).max()))
    np.testing.assert_allclose(model.predict_proba(X), ref.predict_proba(X), atol=1e-6)


def test_warm_start_at_the_optimum_takes_no_iteration():
    X, y = classes_data()
    coef, intercept, _ = fit_logistic(X, y, 3, 1.0)
    assert fit_logistic(X, y, 3, 1.0, coef=coef, intercept=intercept)[2] == 0


def test_wide_probe_chooses_as_scikit_learn_does(monkeypatch):
    X, y = classes_data(n=900, d=300, k=3, scale=0.3)
    assert X.shape[1] >= probes.PRECONDITIONED_FEATURES
    parts = (slice(0, 600), slice(600, 750), slice(750, 900))
    fit = lambda: LogisticProbe().fit(X[parts[0]], y[parts[0]], X[parts[1]], y[parts[1]])  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wide = fit()
        monkeypatch.setattr(probes, "PRECONDITIONED_FEATURES", 10 ** 9)
        reference = fit()
    assert wide.C_ == reference.C_
    # both paths stop once every gradient entry is below 1e-4: rows near the boundary may flip, few others
    assert np.mean(wide.predict(X[parts[2]]) != reference.predict(X[parts[2]])) <= 0.02
    np.testing.assert_allclose(wide.val_scores_, reference.val_scores_, atol=0.02)
    assert wide.classifier_.coef_.shape == reference.classifier_.coef_.shape
    np.testing.assert_allclose(wide.predict_proba(X[:5]).sum(1), 1.0, rtol=1e-6)


def test_a_wide_probe_pickles_and_predicts_after_a_reload():
    import pickle

    X, y = classes_data(n=400, d=260, k=2)
    probe = LogisticProbe(Cs=(0.1, 1.0)).fit(X[:300], y[:300], X[300:], y[300:])
    again = pickle.loads(pickle.dumps(probe))
    np.testing.assert_array_equal(again.predict(X), probe.predict(X))
