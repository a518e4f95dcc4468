"""``DIR/report.html``: one self-contained page (PNGs inline as base64) from ``results.csv``.

The page states the verdict first — the σ (and ε) at which reconstruction stops over every layer
attacked, the most exposed layer, then per layer and noise multiplier σ the largest batch
recovered exactly (or the closest approximate reconstruction), then per (local steps E, σ) the
batch sizes at which every sample of every seed's batch was recovered exactly and what the
attack got at the others — then plots exact fraction and PSNR against b (one line per σ, one
panel per E, one figure per layer), an image grid of originals above reconstructions for
representative cells, and the table of every cell.  A cell the attack does not break is reported as "not recovered by
this attack within its bound", never as private.
"""

import base64
import html
import io
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from .files import CELLS, RESULTS, SETTINGS, cell_name, read_results
from .privacy import DEFAULT_DELTA, epsilon, format_epsilon

CAVEAT = ("A cell this attack does not break is <b>not recovered by this attack within its bound</b> "
          "(max_time = {max_time:g} s per cell): that is not evidence that the setting protects the data. "
          "Other attacks, more time or more knowledge may recover more.")
N_GRID_CELLS = 6  # arbitrary: the report's image grids, one per cell, for the most exposed cells
APPROXIMATE_PSNR_DB = 20.0
"""The PSNR above which the report counts a reconstruction as recognisable (arbitrary: a common
threshold in the gradient-inversion literature, where 20 dB images are visibly the same)."""


def _num(row):
    out = dict(row)
    for k in ("batch_size", "local_steps", "seed"):
        out[k] = int(row[k])
    for k in ("noise_multiplier", "exact_fraction", "certified_fraction", "psnr_db", "time_s"):
        out[k] = float(row[k])
    return out


def _group(rows):
    """{(E, σ): {b: [rows over seeds]}}"""
    groups = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[(r["local_steps"], r["noise_multiplier"])][r["batch_size"]].append(r)
    return groups


def _mean_psnr(rows):
    values = [r["psnr_db"] for r in rows if math.isfinite(r["psnr_db"])]
    return float(np.mean(values)) if values else float("nan")


def _steps(e):
    return f"{e} local step{'s' if e > 1 else ''}"


def _sizes_text(sizes, all_sizes):
    """"b ≤ 16" when ``sizes`` are the smallest of ``all_sizes``, else "b = 8, 16"."""
    if sizes == all_sizes[:len(sizes)]:
        return f"b ≤ {sizes[-1]}" if len(sizes) > 1 else f"b = {sizes[0]}"
    return "b = " + ", ".join(map(str, sizes))


def verdict_lines(rows):
    """One sentence per (E, σ): the batch sizes fully recovered exactly, and what the attack got at the others."""
    lines = []
    for (e, s), by_b in sorted(_group(rows).items()):
        sizes = sorted(by_b)
        full = [b for b in sizes if all(r["exact_fraction"] == 1.0 for r in by_b[b])]
        n_seeds = max(len(v) for v in by_b.values())
        parts = []
        if full:
            seeds = f", all {n_seeds} seeds" if n_seeds > 1 else ""
            parts.append(f"<b>every sample recovered exactly at {_sizes_text(full, sizes)}</b>{seeds}")
        for b in (b for b in sizes if b not in full):
            parts.append(f"b = {b}: {_partial_text(by_b[b])}")
        lines.append(f"{_steps(e)}, σ = {s:g}: " + "; ".join(parts))
    return lines


def _partial_text(cells):
    """What the attack got on a batch size that is not fully exact (over seeds)."""
    frac, psnr = np.mean([r["exact_fraction"] for r in cells]), _mean_psnr(cells)
    if not math.isfinite(psnr):
        return "not recovered by this attack within its bound (no sparse column found)"
    if frac == 0:
        return f"no sample exact; approximate reconstructions at mean PSNR {psnr:.0f} dB"
    return f"{100 * frac:.0f} % exact, the rest not recovered exactly by this attack within its bound " \
           f"(mean PSNR {psnr:.0f} dB)"


def privacy_line(rows, n_samples, *, delta=DEFAULT_DELTA, rounds=1, psnr_db=APPROXIMATE_PSNR_DB):
    """The report's first answer: the noise multiplier σ (and its ε at ``delta``: Opacus' accountant,
    :mod:`gradinv.audit.privacy`) at which exact reconstruction stops, and the same for approximate
    reconstruction above ``psnr_db``.  A client of ``n_samples`` samples takes part in ``rounds``
    rounds of E DP-SGD steps on batches of b (q = b/n); ε is given for the batch size and E of the
    strongest setting recovered (the largest ε over them)."""

    def eps(s, cells):
        return max(epsilon(s, r["batch_size"] / n_samples, rounds * r["local_steps"], delta) for r in cells)

    sigmas = sorted({r["noise_multiplier"] for r in rows})
    parts = []
    for what, recovered in (("exact reconstruction", lambda c: c["exact_fraction"] == 1.0),
                            (f"approximate reconstruction above {psnr_db:g} dB",
                             lambda c: math.isfinite(c["psnr_db"]) and c["psnr_db"] >= psnr_db)):
        broken = [s for s in sigmas if any(recovered(r) for r in rows if r["noise_multiplier"] == s)]
        if not broken:
            parts.append(f"{what}: not achieved by this attack at any σ tested")
            continue
        s = max(broken)
        worst = format_epsilon(eps(s, [r for r in rows if r["noise_multiplier"] == s and recovered(r)]))
        above = [t for t in sigmas if t > s]
        if above:
            nxt = [r for r in rows if r["noise_multiplier"] == above[0]]
            parts.append(f"{what} up to σ = {s:g} (ε = {worst}); not recovered by this attack within its bound "
                         f"from σ = {above[0]:g} (ε ≤ {format_epsilon(eps(above[0], nxt))})")
        else:
            parts.append(f"{what} at every σ tested, up to σ = {s:g} (ε = {worst})")
    return (f"In (ε, δ = {delta:g}), {rounds} round{'s' if rounds > 1 else ''}, n = {n_samples} samples: "
            + "; ".join(parts) + ".")


def headline(rows):
    """One sentence per σ: the largest batch recovered exactly (and with how many local steps), else
    the closest approximate reconstruction, else that nothing was recovered within the bound."""
    lines = []
    for s in sorted({r["noise_multiplier"] for r in rows}):
        groups = {k: v for k, v in _group(rows).items() if k[1] == s}
        exact = [(b, -e) for (e, _), by_b in groups.items() for b, cells in by_b.items()
                 if all(r["exact_fraction"] == 1.0 for r in cells)]
        if exact:
            b, e = max(exact)
            smaller = [c for c in groups[(-e, s)].items() if c[0] <= b]
            upto = "of ≤ " if all(all(r["exact_fraction"] == 1.0 for r in cells) for _, cells in smaller) else "of "
            lines.append(f"σ = {s:g}: every sample of a batch {upto}{b} is recovered exactly ({_steps(-e)})")
            continue
        tried = [(_mean_psnr(cells), b, e) for (e, _), by_b in groups.items() for b, cells in by_b.items()]
        tried = [t for t in tried if math.isfinite(t[0])]
        if tried:
            p, b, e = max(tried)
            lines.append(f"σ = {s:g}: no batch recovered exactly; the closest reconstructions reach mean PSNR "
                         f"{p:.0f} dB (b = {b}, {_steps(e)})")
        else:
            lines.append(f"σ = {s:g}: not recovered by this attack within its bound at any b and E tested")
    return lines


def by_layer(rows):
    """{layer: its rows}, in the order the layers first appear."""
    layers = defaultdict(list)
    for r in rows:
        layers[r["layer"]].append(r)
    return dict(layers)


def _exposure(rows):
    """How much one layer's cells leak, as a sortable key: the largest σ with every sample exact
    (−1: none), the largest σ above APPROXIMATE_PSNR_DB, the mean exact fraction, the mean PSNR."""
    exact = [r["noise_multiplier"] for r in rows if r["exact_fraction"] == 1.0]
    close = [r["noise_multiplier"] for r in rows if math.isfinite(r["psnr_db"]) and r["psnr_db"] >= APPROXIMATE_PSNR_DB]
    psnr = _mean_psnr(rows)
    return (max(exact, default=-1.0), max(close, default=-1.0), float(np.mean([r["exact_fraction"] for r in rows])),
            psnr if math.isfinite(psnr) else -math.inf)


def most_exposed_line(rows):
    """The layer that leaks most (:func:`_exposure`), with every layer's mean exact fraction and PSNR."""
    layers = by_layer(rows)
    name = max(layers, key=lambda k: _exposure(layers[k]))
    each = "; ".join(f"{k}: {100 * np.mean([r['exact_fraction'] for r in v]):.0f} % exact, mean PSNR "
                     + (f"{_mean_psnr(v):.0f} dB" if math.isfinite(_mean_psnr(v)) else "–")
                     for k, v in layers.items())
    return f"Most exposed of the {len(layers)} layers attacked: layer {name} (over every cell: {each})."


def _figure_png(fig):
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_curves(rows):
    """PNG (base64): exact fraction and PSNR against b, one line per σ, one column per E."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _group(rows)
    steps = sorted({e for e, _ in groups})
    sigmas = sorted({s for _, s in groups})
    fig, axes = plt.subplots(2, len(steps), figsize=(4.2 * len(steps), 6), squeeze=False, sharex=True)
    for j, e in enumerate(steps):
        for s in sigmas:
            by_b = groups.get((e, s))
            if not by_b:
                continue
            sizes = sorted(by_b)
            axes[0, j].plot(sizes, [np.mean([r["exact_fraction"] for r in by_b[b]]) for b in sizes], "o-",
                            label=f"σ = {s:g}")
            axes[1, j].plot(sizes, [_mean_psnr(by_b[b]) for b in sizes], "o-", label=f"σ = {s:g}")
        axes[0, j].set_title(_steps(e))
        axes[0, j].set_ylim(-0.05, 1.05)
        axes[0, j].set_ylabel("exact fraction")
        axes[1, j].set_ylabel("mean PSNR (dB)")
        axes[1, j].set_xlabel("batch size b")
        axes[1, j].set_xscale("log", base=2)
        for ax in axes[:, j]:
            ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=8)
    fig.suptitle("mean over seeds; a missing PSNR point: the attack found no sparse column", fontsize=9)
    return _figure_png(fig)


def _as_images(flat, sample_shape):
    """Rows of ``flat`` as (N, H, W) or (N, H, W, 3) images when the sample shape allows, else strips."""
    n, d = flat.shape
    shape = tuple(sample_shape)
    if int(np.prod(shape)) == d:
        if len(shape) == 3 and shape[0] in (1, 3):
            imgs = flat.reshape(n, *shape).transpose(0, 2, 3, 1)
            return imgs[..., 0] if shape[0] == 1 else imgs
        if len(shape) == 3 and shape[2] in (1, 3):
            imgs = flat.reshape(n, *shape)
            return imgs[..., 0] if shape[2] == 1 else imgs
        if len(shape) == 2:
            return flat.reshape(n, *shape)
    side = math.isqrt(d)
    return flat.reshape(n, side, side) if side * side == d else flat.reshape(n, 1, d)


def representative_cells(rows):
    """Up to N_GRID_CELLS cells for the image grid, seed 0: for each (E, σ, layer) the largest batch
    recovered exactly and the smallest one attacked but not exact (where the attack stops)."""
    groups = defaultdict(list)
    for r in rows:
        if r["seed"] == 0 and r["status"] == "attacked":
            groups[(r["local_steps"], r["noise_multiplier"], r["layer"])].append(r)
    picked = []
    for key in sorted(groups):
        exact = [r for r in groups[key] if r["exact_fraction"] == 1.0]
        partial = [r for r in groups[key] if r["exact_fraction"] < 1.0]
        picked += [max(exact, key=lambda r: r["batch_size"])] if exact else []
        picked += [min(partial, key=lambda r: r["batch_size"])] if partial else []
    return picked[:N_GRID_CELLS]


def plot_cell_images(out_dir, row, sample_shape):
    """PNG (base64) of one cell: its kept originals (top) above their reconstructions (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(out_dir) / CELLS / (cell_name(row["layer"], row["batch_size"], row["noise_multiplier"],
                                              row["local_steps"], row["seed"]) + ".npz")
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as f:
        orig, rec, err, exact = f["original"], f["recovered"], f["relative_error"], f["exact"]
    shape = sample_shape if row["first_layer"] == "True" else (orig.shape[1],)
    orig_i, rec_i = _as_images(orig, shape), _as_images(rec, shape)
    n = len(orig_i)
    fig, axes = plt.subplots(2, n, figsize=(1.0 * n, 2.3), squeeze=False)
    for i in range(n):
        lo, hi = float(orig_i[i].min()), float(orig_i[i].max())
        scale = (hi - lo) or 1.0
        for k, img in enumerate((orig_i[i], rec_i[i])):
            ax = axes[k, i]
            ax.imshow(np.clip((img - lo) / scale, 0, 1), cmap="gray" if img.ndim == 2 else None)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[1, i].set_xlabel("exact" if exact[i] else f"err {min(err[i], 9.99):.1g}", fontsize=7)
    axes[0, 0].set_ylabel("original", fontsize=8)
    axes[1, 0].set_ylabel("recovered", fontsize=8)
    return _figure_png(fig)


def cell_status(r):
    """The table's words for one cell (never "safe"): over the batch's distinct inputs, then the
    attack's own account of what it recovered (duplicates with their count, blocks known by their span)."""
    b = r["batch_size"]
    if r["status"] != "attacked":
        return f"not recovered by this attack within its bound ({r['reason']})"
    n = int(r.get("distinct") or b)
    k = round(r["exact_fraction"] * n)
    of = f"{n} distinct of {b} samples" if n < b else f"{b}"
    if k == n:
        cert = " and certified" if r["certified_fraction"] == 1.0 else ""
        words = f"all {of} recovered exactly{cert}"
    elif k:
        words = f"{k}/{of} exact; the rest not recovered by this attack within its bound"
    else:
        words = "no sample exact; approximate reconstructions (PSNR: how close they came)"
    return words + (f" (the attack: {r['outcome']})" if r.get("outcome") else "")


def _table(rows):
    head = ["layer", "b", "σ", "E", "seed", "exact", "certified", "PSNR dB", "time s", "result"]
    body = []
    for r in sorted(rows, key=lambda r: (r["layer"], r["local_steps"], r["noise_multiplier"], r["batch_size"],
                                         r["seed"])):
        cells = [html.escape(r["layer"]), r["batch_size"], f"{r['noise_multiplier']:g}", r["local_steps"], r["seed"],
                 f"{100 * r['exact_fraction']:.0f} %", f"{100 * r['certified_fraction']:.0f} %",
                 "–" if not math.isfinite(r["psnr_db"]) else f"{r['psnr_db']:.1f}", f"{r['time_s']:.1f}",
                 html.escape(cell_status(r))]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ("<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(body) + "</table>")


STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222;line-height:1.4}
.verdict{background:#fdecea;border-left:6px solid #c0392b;padding:0.8em 1.2em}
.caveat{background:#fff8e1;border-left:6px solid #f0ad4e;padding:0.6em 1.2em}
table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
img{max-width:100%}"""


def write_report(out_dir, *, delta=DEFAULT_DELTA, rounds=1):
    """Write ``out_dir``/report.html from its results.csv and audit.json; return its path.  ``delta``
    and ``rounds`` (rounds a client takes part in) set the ε reported (:func:`privacy_line`)."""
    out_dir = Path(out_dir)
    settings = json.loads((out_dir / SETTINGS).read_text())
    rows = [_num(r) for r in read_results(out_dir / RESULTS)]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>gradinv defence audit</title>"
             f"<style>{STYLE}</style></head><body><h1>Defence audit: gradient inversion of {html.escape(settings['model_factory'])}</h1>"]
    if not rows:
        parts.append("<p>No cell has finished yet.</p>")
    else:
        layers = by_layer(rows)
        several = len(layers) > 1
        first = ([privacy_line(rows, settings["n_samples"], delta=delta, rounds=rounds)]
                 if "n_samples" in settings else [])
        first += [most_exposed_line(rows)] if several else []
        first += [f"layer {k}: {line}" if several else line for k, v in layers.items() for line in headline(v)]
        details = [f"layer {k}, {line}" if several else line for k, v in layers.items() for line in verdict_lines(v)]
        parts.append("<div class='verdict'><h2>Verdict</h2><ul>"
                     + "".join(f"<li><b>{html.escape(line)}</b></li>" for line in first)
                     + "</ul><p>Per number of local steps and σ:</p><ul>"
                     + "".join(f"<li>{line}</li>" for line in details) + "</ul></div>")
    parts.append(f"<p class='caveat'>{CAVEAT.format(max_time=settings['max_time'])}</p>")
    parts.append(
        "<h2>What was audited</h2><ul>"
        f"<li>Model: <code>{html.escape(settings['model_factory'])}</code>, state "
        f"<code>{html.escape(str(settings['state']))}</code>; data <code>{html.escape(settings['data'])}</code>"
        f" (inputs of shape {tuple(settings['sample_shape'])}).</li>"
        + "".join(f"<li>Attacked layer {html.escape(k)}: {html.escape(v)}.</li>" for k, v in settings["reasons"].items())
        + "<li>Client update per cell: a batch of b samples drawn by the seed; σ = 0 and E = 1: one SGD step "
        "(the gradient of every parameter); σ &gt; 0: DP-SGD through Opacus (per-sample clipping to "
        f"C = {settings['max_grad_norm']:g}, noise σC); E &gt; 1: E full-batch local steps at learning rate "
        f"η = {settings['lr']:g}, the server inverting (θ₀ − θ_E)/η.</li>"
        "<li>Exact: relative error ≤ 1e-6 (float64 model) or 1e-4 (float32) against the true inputs of the "
        "attacked layer. Certified: proved exact from what the server sees (only for plain SGD steps; noisy "
        "and multi-step updates are attacked in approximate mode, without certificates). "
        "PSNR: mean over the batch, capped at 150 dB.</li></ul>")
    if rows:
        for k, v in by_layer(rows).items():
            where = f", layer {html.escape(k)}" if several else ""
            parts.append(f"<h2>Exact fraction and PSNR against batch size{where}</h2>"
                         f"<img src='data:image/png;base64,{plot_curves(v)}' alt='exact fraction and PSNR against "
                         "batch size'>")
        parts.append("<h2>Originals (top) and reconstructions (bottom)</h2>")
        for r in representative_cells(rows):
            png = plot_cell_images(out_dir, r, settings["sample_shape"])
            if png:
                where = f"layer {html.escape(r['layer'])}, " if several else ""
                parts.append(f"<h3>{where}b = {r['batch_size']}, σ = {r['noise_multiplier']:g}, {_steps(r['local_steps'])}"
                             f", seed {r['seed']}: {html.escape(cell_status(r))}</h3>"
                             f"<img src='data:image/png;base64,{png}' alt='originals and reconstructions'>")
        parts.append(f"<h2>Every cell</h2>{_table(rows)}")
    parts.append("<p><small>Written by <code>gradinv audit</code> from results.csv in this folder.</small></p>"
                 "</body></html>")
    path = out_dir / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
