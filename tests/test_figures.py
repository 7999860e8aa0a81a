"""Figures show what the run did (Agg backend; assertions on axes, lines, limits and labels)."""
import warnings

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import minireg  # noqa: E402
from minireg import datasets  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::minireg.DivergenceWarning")


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _titles(fig):
    return [a.get_title() for a in fig.axes]


def test_a_divergence_fills_its_loss_panel_without_overflow():
    X, y = datasets.linear_1d()
    r = minireg.train(X, y, optimizer="sgd", lr=10, batch_size=32, epochs=50, trace=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # matplotlib's "overflow encountered in exp"
        fig = r.plot()
        fig.savefig("/dev/null", format="png")
    ax = next(a for a in fig.axes if a.get_title().startswith("loss"))
    lo, hi = ax.get_ylim()
    assert ax.get_yscale() == "log" and hi / lo > 1e100  # the explosion spans the panel
    assert any(np.allclose(line.get_xdata(), r.diverged_at) for line in ax.lines)  # the non-finite step
    assert "non-finite at step" in " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert "diverged at step" in fig._suptitle.get_text()


def test_untraced_runs_get_only_the_panels_they_have():
    X, y = datasets.linear_1d()
    fig = minireg.train(X, y, epochs=20).plot()
    assert _titles(fig) == ["loss (mse)"]
    fig = minireg.train(X, y, epochs=20, schedule="step", step_size=5, gamma=0.5).plot()
    assert _titles(fig) == ["loss (mse)", "learning rate (per epoch)"]
    assert not any(t.get_text().startswith("train with trace") for a in fig.axes for t in a.texts)


def test_an_mlp_shows_each_layers_gradient_norm():
    case = datasets.CASES["deep_sigmoid"]
    X, y, _ = case.data()
    r = minireg.train(X, y, **case.bad, trace=True)
    fig = r.plot()
    ax = next(a for a in fig.axes if a.get_title() == "gradient norm per layer")
    assert len(ax.lines) == r.layout.n_layers
    first = [line.get_ydata()[0] for line in ax.lines]
    assert first[-1] / first[0] > 1e5  # the vanishing gradient, decades apart at step 0


def test_runs_overlay_on_one_axes_and_plot_compare_labels_what_differs():
    X, y = datasets.linear_1d()
    runs = [minireg.train(X, y, optimizer="sgd", lr=0.1, epochs=30, batch_size=16, trace=True),
            minireg.train(X, y, optimizer="sgd", lr=0.1, momentum=0.9, epochs=30, batch_size=16, trace=True),
            minireg.train(X, y, optimizer="rmsprop", lr=0.01, epochs=30, batch_size=16, trace=True),
            minireg.train(X, y, optimizer="adam", lr=0.05, epochs=30, batch_size=16, trace=True)]
    fig, ax = plt.subplots()
    assert runs[0].plot(ax=ax) is fig and runs[1].plot(ax=ax) is fig
    assert len(ax.lines) == 2 and len(fig.axes) == 1  # one curve per run, labelled by its settings
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["sgd lr=0.1 batch_size=16",
                                                                    "sgd lr=0.1 momentum=0.9 batch_size=16"]
    fig = minireg.plot_compare(runs)
    loss_ax, ratio_ax = fig.axes
    labels = [t.get_text() for t in ratio_ax.get_legend().get_texts()]
    assert labels == ["sgd lr=0.1", "sgd lr=0.1 momentum=0.9", "rmsprop lr=0.01", "adam lr=0.05"]
    assert ratio_ax.get_title() == "‖update‖ / ‖params‖" and len(ratio_ax.lines) == 4
    fig = minireg.plot_compare([minireg.train(X, y, epochs=5), minireg.train(X, y, epochs=5, lr=0.1)],
                               labels=["a", "b"])
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="labels has"):
        minireg.plot_compare(runs, labels=["x"])


def test_plot_path_titles_the_settings_and_frames_a_divergence():
    X, y = datasets.linear_1d()
    r = minireg.train(X, y, optimizer="sgd", lr=0.05, momentum=0.9, batch_size=10, epochs=3, trace=True)
    assert "momentum=0.9" in r.plot_path().axes[0].get_title()
    bad = minireg.train(X, y, optimizer="sgd", lr=10, batch_size=32, epochs=50, trace=True)
    ax = bad.plot_path().axes[0]
    assert max(abs(v) for v in (*ax.get_xlim(), *ax.get_ylim())) < 10  # the frame holds start and optimum
    assert "diverged at step" in ax.get_title()
    assert any("leaves the frame at step" in t.get_text() for t in ax.texts)


def test_lr_range_curve_does_not_lag_and_its_suggestion_is_below_the_bound():
    X, y = datasets.linear_1d()
    res = minireg.lr_range_test(X, y)
    i = int(np.argmin(np.abs(res.lrs - res.suggestion)))
    assert 0.5 < res.smoothed[i] / res.losses[i] < 2  # the curve shown sits on the loss, not behind it
    assert 1e-3 < res.suggestion < res.bound
    Xs = (X - X.mean()) / X.std()
    res = minireg.lr_range_test(Xs * 10, y, num_steps=200)  # the loss still falls fastest above the bound
    assert res.steepest > res.bound and res.suggestion == pytest.approx(0.5 * res.bound)
    assert "above the bound" in repr(res)
    assert not minireg.train(Xs * 10, y, lr=res.suggestion, epochs=500).diverged
