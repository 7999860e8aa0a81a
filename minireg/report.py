"""HTML views of a run: ``result.report(path)`` (one self-contained page) and the compact
``result._repr_html_()`` shown by Jupyter.

The report holds the run's configuration, its outcome, the loss curves and gradient/update norm
plots (:func:`minireg.plot.plot_result`, embedded as base64 PNG), the diagnosis (each finding with
its evidence and fix; ``result.diagnose()`` is run when the run has not been diagnosed yet) and the
stability bound on the learning rate: the bound numbers the findings carry, and, for a run that
still holds its data, :func:`minireg.stability_bound` computed for the run's settings ("n/a" for a
loaded run, which does not keep its data). Every piece of text is HTML-escaped; the page loads
nothing from outside the file.
"""
import base64
import datetime
import html
import io
import math
import os
import warnings

import numpy as np

from ._version import __version__
from .diagnose import stability_bound
from .diagnose.curvature import _lr_from_lambda
from .findings import fix_call, verification_text
from .plot import plot_path, plot_result
from .result import implements

_BOUND_KEYS = ("bound", "minibatch_bound", "bound_standardized", "lambda_max", "bound_kind", "kappa",
               "kappa_standardized", "gd_steps_to_1000x", "gd_steps_to_1000x_standardized", "lr")
_MAX_LIST = 12  # evidence lists longer than this are shown shortened

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2em auto;max-width:1100px;
 color:#1d1d1f;padding:0 1em;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;
 vertical-align:top} th{background:#f5f5f7}
.repr{color:#555;font-size:.9em}
.finding{border-left:6px solid #999;background:#fafafa;padding:.6em 1em;margin:1em 0}
.sev-error{border-color:#d70015}.sev-warning{border-color:#c93400}.sev-info{border-color:#0071e3}
.badge{display:inline-block;padding:0 .5em;border-radius:.6em;color:#fff;font-size:.8em;background:#999;
 text-transform:uppercase;vertical-align:middle}
.sev-error .badge{background:#d70015}.sev-warning .badge{background:#c93400}.sev-info .badge{background:#0071e3}
.fix{background:#eef7ee;padding:.3em .6em;display:inline-block}
.ok{color:#1a7f37}.bad{color:#d70015;font-weight:bold}.warn{color:#9a6700}
img{max-width:100%;height:auto;border:1px solid #eee}
footer{margin-top:3em;color:#888;font-size:.8em}
"""


def _e(v):
    return html.escape(str(v), quote=True)


def _num(v, digits=6):
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        return f"{v:.{digits}g}"
    return str(v)


def _value(v):
    """A compact text form of a config or evidence value (long lists shortened)."""
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        items = [_value(x) for x in v[:_MAX_LIST]]
        more = f", … ({len(v)} in all)" if len(v) > _MAX_LIST else ""
        return ("(" if isinstance(v, tuple) else "[") + ", ".join(items) + more + (")" if isinstance(v, tuple) else "]")
    if isinstance(v, (float, np.floating, int, np.integer, bool, np.bool_)):
        return _num(v)
    return str(v)


def _table(rows, header=None, cls=None):
    out = [f'<table class="{_e(cls)}">' if cls else "<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _png(fig, dpi=90):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64, alt, width=None):
    w = f' width="{int(width)}"' if width else ""
    return f'<img alt="{_e(alt)}"{w} src="data:image/png;base64,{b64}">'


def _findings(result):
    """The run's findings: those it already has (diagnosed, or saved with a loaded run), else a new
    diagnosis (from history and trace alone for a loaded run)."""
    saved = vars(result).get("findings")
    if saved is not None and (saved or result.data is not None):
        return list(saved)
    return result.diagnose()


def _fix_text(fix):
    return fix_call(fix)


def outcome_rows(result):
    """(label, value text) of the run's outcome."""
    cfg, h = result.config, result.history
    rows = [("epochs", f"{h['loss'].size} of {cfg['epochs']} ({result.n_steps} steps)")]
    if h["loss"].size:
        rows.append(("final loss", _num(h["loss"][-1])))
    if "val_loss" in h and h["val_loss"].size:
        rows.append(("final validation loss", _num(h["val_loss"][-1])))
    if result.stopped_epoch is not None:
        rows.append(("early stopping", f"stopped at epoch {result.stopped_epoch}, best epoch {result.best_epoch}"))
    rows.append(("diverged", f"yes, at step {result.diverged_at}" if result.diverged else "no"))
    compiling = getattr(result, "compile_seconds", 0.0)
    rows.append(("time", f"{result.seconds:.3g} s" + (f" (+ {compiling:.3g} s compiling or loading the kernels)"
                                                       if compiling else "")))
    rows.append(("trace", "none" if result.trace is None else f"{result.trace.mode}, {len(result.trace)} rows"))
    return rows


# --------------------------------------------------------------------------------------------------
# stability bound


def _bound_points(result):
    """[(label, extra stability_bound kwargs)]: where to evaluate the bound. A fully traced run: its
    first step (as the diagnosis does) and its last finite recorded step (curvature and an adaptive
    optimizer's preconditioner change as training goes); otherwise the final parameters."""
    tr = result.trace
    if tr is not None and tr.params is not None and len(tr):
        state = tr.state.get("exp_avg_sq", tr.state.get("square_avg"))
        adam = "exp_avg_sq" in tr.state
        ok = np.all(np.isfinite(tr.params), axis=1)
        if state is not None:
            ok &= np.all(np.isfinite(state), axis=1)
        rows = np.flatnonzero(ok)
        if rows.size == 0:
            return [("at the first step", None)]
        out = []
        for label, i in (("at the first step", rows[0]), ("at the last finite recorded step", rows[-1])):
            if out and i == rows[0]:
                break
            kw = {"params": np.asarray(tr.params[i], np.float64)}
            if state is not None:
                kw["exp_avg_sq"] = np.asarray(state[i], np.float64)
                if adam:
                    kw["step"] = int(tr.step[i]) + 1
            out.append((f"{label} ({int(tr.step[i])})", kw))
        return out
    theta = np.asarray(result.theta, np.float64)
    return [("at the final parameters", {"params": theta} if np.all(np.isfinite(theta)) else {})]


def _computed_bounds(result):
    """[(label, StabilityBound or None, note)] from minireg.stability_bound for the run's settings on
    the data it trained on; a note instead for a loaded run (no data) or an error."""
    if result.data is None:
        return [("", None, "n/a: this run was saved without training rows (save(path, rows=0)), so the bound "
                 "cannot be recomputed.")]
    cfg = result.config
    X, y = (np.asarray(a, np.float64) for a in result.data[:2])
    base = dict(model=cfg["model"], loss=cfg["loss"], delta=cfg["delta"], optimizer=cfg["optimizer"], lr=cfg["lr"],
                momentum=cfg.get("momentum", 0.0), beta1=cfg.get("beta1", 0.9), batch_size=cfg["batch_size"],
                hidden=cfg["hidden"] or (1,), activation=cfg["activation"] or "relu", eps=cfg.get("eps", 1e-8),
                beta2=cfg.get("beta2", 0.999))
    out = []
    for label, kw in _bound_points(result):
        if kw is None:
            out.append((label, None, "n/a: no recorded step has finite parameters."))
            continue
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                b = stability_bound(X, y, **base, **kw)
                _exact_from_gram(result, b)
                out.append((label, b, None))
        except (ValueError, TypeError, FloatingPointError, np.linalg.LinAlgError) as exc:
            out.append((label, None, f"n/a: the bound could not be computed ({exc})."))
    return out


def _exact_from_gram(result, b):
    """A loaded linear MSE run's bound from its saved X̃ᵀX̃/n of every training row (exact), where the
    sample gave an estimate."""
    gram = getattr(result, "gram", None)
    cfg = result.config
    if gram is None or cfg["loss"] != "mse" or cfg["optimizer"] not in ("sgd",) or result.saved_sample is None:
        return
    if result.saved_sample["rows"] == result.saved_sample["of"]:
        return
    lam = 2.0 * float(np.linalg.eigvalsh(np.asarray(gram, np.float64))[-1])
    b.lambda_max, b.lr_max = lam, _lr_from_lambda(lam, "sgd", cfg.get("momentum", 0.0), 0.9)
    b.kind = "exact, from the saved X̃ᵀX̃/n of all training rows"
    b.exceeded = None if b.lr is None else b.lr > b.lr_max


def _verdict(lr, b):
    lr_max = b.lr_max
    if lr_max is None or math.isnan(lr_max):
        return "n/a (" + _e(b.kind) + ")"
    if lr_max == math.inf:
        return "no bound: no curvature, no lr makes this loss diverge (it can only oscillate)"
    cls = "bad" if lr > lr_max else "ok"
    side = "above" if lr > lr_max else "below"
    return f'<span class="{cls}">lr={_e(_num(lr))} is {side} {_e(_num(lr_max, 4))}</span>'


def _bound_section(result, findings):
    parts = []
    lr = result.config["lr"]
    computed = _computed_bounds(result)
    bounds = [(label, b) for label, b, _ in computed if b is not None]
    if len(bounds) == 2 and (bounds[0][1].lambda_max, bounds[0][1].sharpest_batch_lr) == \
            (bounds[1][1].lambda_max, bounds[1][1].sharpest_batch_lr):
        bounds = [("at every step (the curvature does not depend on the parameters here)", bounds[0][1])]
    for label, b, note in computed:
        if b is None:
            parts.append(f'<p class="na">Computed bound{" " + _e(label) if label else ""}: {_e(note)}</p>')
    if bounds:
        def row(name, fn):
            return (_e(name), *[fn(b) for _, b in bounds])
        rows = [row("largest stable lr (lr_max)", lambda b: _e(_num(b.lr_max, 4))),
                row("this run's lr", lambda b: _e(_num(lr))),
                row("verdict", lambda b: _verdict(lr, b)),
                row("λmax", lambda b: _e(_num(b.lambda_max, 4))),
                row("how λmax was obtained", lambda b: f"<small>{_e(b.kind)}</small>")]
        if any(b.sharpest_batch_lr is not None for _, b in bounds):
            rows.append(row(f"sharpest-batch lr (batch {bounds[0][1].batch_size}; "
                            "a noise-scale figure, not a threshold)",
                            lambda b: _e(_num(b.sharpest_batch_lr, 4)) if b.sharpest_batch_lr is not None else "n/a"))
        if any(b.kappa is not None for _, b in bounds):
            rows.append(row("condition number κ (GD steps to shrink the error 1000×)",
                            lambda b: f"{_e(_num(b.kappa, 4))} ({_e(_num(b.steps_to_1000x))})"))
        if any(b.kappa_standardized is not None for _, b in bounds):
            rows.append(row("κ after z-scoring (lr_max then)",
                            lambda b: f"{_e(_num(b.kappa_standardized, 4))} ({_e(_num(b.lr_max_standardized, 4))})"))
        rows.append(row("rows used", lambda b: _e(b.n_rows_used)))
        header = ("", *[label for label, _ in bounds])
        parts.append("<p>Computed by <code>minireg.stability_bound</code> for this run's settings on the data it "
                     "trained on (as scaled):</p>" + _table(rows, header, cls="bound"))
        if result.config["optimizer"] in ("adam", "adamw", "rmsprop"):
            parts.append("<p><small>Adaptive optimizers: the bound is on the preconditioned sharpness "
                         "λmax(P⁻¹H) with P from the optimizer state at that step; early in training P is small "
                         "and the bound low, and these methods settle at the edge of stability rather than "
                         "diverge, so compare the bound late in training.</small></p>")
    ev_rows = []
    for f in findings:
        ev = getattr(f, "evidence", None) or {}
        for k in _BOUND_KEYS:
            if k in ev and not (k == "lr" and not any(x in ev for x in ("bound", "lambda_max"))):
                ev_rows.append((f"<code>{_e(f.code)}</code>", _e(k), _e(_value(ev[k]))))
    if ev_rows:
        parts.append("<p>Bound numbers in the findings' evidence:</p>" + _table(ev_rows, ("finding", "key", "value")))
    elif not bounds:
        parts.append("<p>No finding carries bound numbers either: stability bound n/a.</p>")
    return "".join(parts)


# --------------------------------------------------------------------------------------------------
# plots


def _result_plots(result):
    """[(title, base64 PNG)] of plot_result (and plot_path where it applies); errors become notes."""
    out = []
    try:
        import matplotlib.pyplot as plt  # lazy on purpose: only when a report is written
    except ImportError:
        return [("plots", None)]
    jobs = [("loss, gradient and update norms, update/param ratio, learning rate", plot_result)]
    tr = result.trace
    if (result.layout.size == 2 and tr is not None and tr.params is not None and result.data is not None):
        jobs.append(("parameter path over the loss contours", plot_path))
    for title, fn in jobs:
        fig = None
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig = fn(result)
                out.append((title, _png(fig)))
        except Exception as exc:  # a plot that fails must not cost the rest of the report
            out.append((title, f"error: {type(exc).__name__}: {exc}"))
        finally:
            if fig is not None:
                plt.close(fig)
    return out


def _small_loss_png(result):
    """A small loss-curve PNG (base64) drawn without pyplot (no global figure state)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _draw_small_loss(result)


def _draw_small_loss(result):
    from matplotlib.figure import Figure  # lazy on purpose: only when a notebook shows a run
    h = result.history
    fig = Figure(figsize=(4.2, 2.3), layout="constrained")
    ax = fig.subplots()
    x = np.arange(1, h["loss"].size + 1)
    ax.plot(x, h["loss"], lw=1.2, label="train")
    if "val_loss" in h:
        ax.plot(x, h["val_loss"], lw=1.2, label="validation")
    finite = np.asarray(h["loss"], np.float64)
    if np.any(np.isfinite(finite) & (finite > 0)):
        ax.set_yscale("log")
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel(f"loss ({result.config['loss']})", fontsize=8)
    ax.tick_params(labelsize=7)
    if result.diverged:
        ax.set_title(f"diverged at step {result.diverged_at}", fontsize=8, color="#d70015")
    if "val_loss" in h:
        ax.legend(fontsize=7)
    return _png(fig, dpi=80)


# --------------------------------------------------------------------------------------------------
# the report


def render(result):
    """The report of ``result`` as one HTML string."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        findings = _findings(result)
    cfg = result.config
    model = "linear" if cfg["model"] == "linear" else f"MLP {'-'.join(map(str, cfg['sizes']))} {cfg['activation']}"
    title = f"minireg run: {model}, {cfg['loss']}, {cfg['optimizer']} lr={_num(cfg['lr'])}"
    body = [f"<h1>{_e(title)}</h1>", f'<p class="repr mono">{_e(repr(result))}</p>']

    kind, text = result.outcome()
    status = f'<span class="{kind}">{_e(text)}</span>'
    body.append(f'<section id="outcome"><h2>Outcome: {status}</h2>'
                + _table([(_e(k), _e(v)) for k, v in outcome_rows(result)]) + "</section>")

    fs = ['<section id="findings"><h2>Findings</h2>']
    if result.data is None:
        fs.append("<p><small>This run was loaded from disk without its data: findings that need the data are "
                  "those saved with it, or none.</small></p>")
    elif getattr(result, "saved_sample", None) is not None:
        k, n = result.saved_sample["rows"], result.saved_sample["of"]
        fs.append(f"<p><small>This run was loaded from disk with {k} of its {n} training rows (the sample "
                  "minireg saves); fixes cannot be re-run from here.</small></p>")
    if not findings:
        fs.append('<p class="ok">No problems found.</p>')
    for f in findings:
        code, sev = _e(f.code), _e(f.severity)
        where = f" at step {_e(f.step)}" if f.step is not None else ""
        fs.append(f'<div class="finding sev-{sev}" id="finding-{code}" data-code="{code}">'
                  f'<h3><span class="badge">{sev}</span> <code>{code}</code>{where}</h3>'
                  f"<p>{_e(f.message)}</p>")
        v = f.verified
        if f.fix:
            fs.append(f'<p>Fix: <code class="fix">{_e(_fix_text(f.fix))}</code></p>')
            if v is not None and v["cleared"]:
                fs.append(f'<p class="ok">Verified: {_e(verification_text(v)[len("re-ran with it: "):])}</p>')
            elif f.severity != "info":
                fs.append("<p><small>Not verified by re-running "
                          + _e(f.evidence.get("not_verified", "(the run does not keep its training data)")) + "."
                          "</small></p>")
        elif v is not None and not v["cleared"] and f.severity != "info":
            tried = ", ".join(f"{_fix_text(t['fix'])} ({t['why']})" for t in v["tried"])
            fs.append(f'<p class="bad">No fix found: tried {_e(tried)}.</p>')
        else:
            fs.append("<p>Fix: nothing to change.</p>")
        if f.evidence:
            rows = [(f"<code>{_e(k)}</code>", _e(_value(v))) for k, v in f.evidence.items()]
            fs.append("<details open><summary>evidence</summary>" + _table(rows, ("key", "value")) + "</details>")
        fs.append("</div>")
    fs.append("</section>")
    body.append("".join(fs))

    body.append('<section id="stability"><h2>Stability bound on the learning rate</h2>'
                + _bound_section(result, findings) + "</section>")

    ps = ['<section id="plots"><h2>Plots</h2>']
    for ptitle, png in _result_plots(result):
        if png is None:
            ps.append("<p>matplotlib is not installed: no plots.</p>")
        elif png.startswith("error:"):
            ps.append(f"<p>{_e(ptitle)}: not drawn ({_e(png)})</p>")
        else:
            ps.append(f"<h3>{_e(ptitle)}</h3>" + _img(png, ptitle))
    ps.append("</section>")
    body.append("".join(ps))

    body.append('<section id="config"><h2>Configuration</h2>'
                + _table([(f"<code>{_e(k)}</code>", _e(_value(v))) for k, v in cfg.items()], ("setting", "value"))
                + "</section>")
    stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    body.append(f"<footer>minireg {_e(__version__)} · {_e(stamp)}</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"generator\" content=\"minireg {_e(__version__)}\"><title>{_e(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


@implements("report")
def write_report(result, path):
    """Write the report of ``result`` to ``path`` (one self-contained HTML file); returns ``path``."""
    text = render(result)
    path = os.fspath(path)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


# --------------------------------------------------------------------------------------------------
# Jupyter


_HIGHLIGHTS = ("model", "sizes", "activation", "loss", "optimizer", "lr", "epochs", "batch_size", "standardize",
               "dtype")


@implements("_repr_html_")
def repr_html(result):
    """Compact HTML for Jupyter: config highlights, the outcome, the top findings (when the run has
    been diagnosed) and a small loss plot."""
    cfg, h = result.config, result.history
    rows = [(f"<code>{_e(k)}</code>", _e(_value(cfg[k]))) for k in _HIGHLIGHTS
            if k in cfg and not (cfg["model"] == "linear" and k in ("sizes", "activation"))]
    rows.append(("final loss", _e(_num(h["loss"][-1])) if h["loss"].size else "n/a"))
    if "val_loss" in h:
        rows.append(("val loss", _e(_num(h["val_loss"][-1])) if h["val_loss"].size else "n/a"))
    kind, text = result.outcome()
    color = {"ok": "#1a7f37", "warn": "#9a6700", "bad": "#d70015"}[kind]
    rows.append(("outcome", f'<b style="color:{color}">{_e(text)}</b>'))
    rows.append(("steps / time", f"{_e(result.n_steps)} / {result.seconds:.3g} s"))
    findings = vars(result).get("findings")
    if findings is not None:
        if findings:
            items = "".join(f"<li><b>{_e(f.severity)}</b> <code>{_e(f.code)}</code>: {_e(f.message)}"
                            + (f" <i>fix: {_e(_fix_text(f.fix))}</i>" if f.fix else "") + "</li>"
                            for f in findings[:3])
            more = f"<li>… {len(findings) - 3} more</li>" if len(findings) > 3 else ""
            rows.append(("findings", f'<ul style="margin:0;padding-left:1.2em">{items}{more}</ul>'))
        else:
            rows.append(("findings", "none"))
    else:
        rows.append(("findings", "not diagnosed yet: <code>result.diagnose()</code>"))
    table = ("<table>" + "".join(f'<tr><th style="text-align:left">{k}</th><td style="text-align:left">{v}</td></tr>'
                                 for k, v in rows) + "</table>")
    plot = ""
    if h["loss"].size:
        try:
            plot = _img(_small_loss_png(result), "loss per epoch")
        except Exception:  # no matplotlib, or nothing drawable: the table alone
            plot = ""
    return (f'<div class="minireg-result"><div style="font-weight:bold">TrainResult</div>'
            f'<div style="display:flex;gap:1em;align-items:flex-start;flex-wrap:wrap">{table}{plot}</div></div>')
