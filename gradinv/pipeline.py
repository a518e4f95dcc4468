"""The attack as a scikit-learn Pipeline: grad → (L, R) → Q → dL/dZ → X.

Steps (named):
  "factorize"    :class:`~gradinv.factorize.GradientFactorization`   dL/dW = L R
  "search"       :class:`~gradinv.search.SearchStep`   the columns' directions Q̃, by the search
                 named (:data:`gradinv.search.SEARCHES`) or chosen from what the server knows
  "rounding"     :class:`ExactRounding`   sampling rounding, sparsity filter, greedy selection
  "last_column"  :class:`~gradinv.last_column.LastColumn`   the one column left out, from its sample's input
  "reconstruct"  :class:`~gradinv.reconstruct.InputReconstruction`   scales from dL/db, X = Q⁻¹R

``Pipeline.fit(grad)`` runs the attack on grad = [dL/dW | dL/db] (m × (n+1)), see
:func:`~gradinv.factorize.stack_gradient`; ``fit_transform(grad)`` returns the batch X (b × n).
"""

import time
from dataclasses import dataclass

import numpy as np
from sklearn.pipeline import Pipeline

from sudl import complete_basis, select_independent
from sudl._array_api import array_namespace, device, to_numpy
from sudl.rounding import round_directions

from ._step import GradientStep
from ._checks import check_layer_arguments
from .factorize import (GradientFactorization, NoExactColumnError, NoRankGapError, noise_evidence,
                        stack_gradient)
from .last_column import LastColumn
from .reconstruct import InputReconstruction
from .downstream import as_downstream
from .search import EXACT_SEARCHES, SEARCHES, SearchStep
from .knowledge import Knowledge
from .labels import infer_labels
from .search.arrangement import APPROXIMATE_DRIFT

SOLVERS = tuple(SEARCHES)


class ExactRounding(GradientStep):
    """Pipeline step: make directions exact, filter by exact-zero count, select b greedily.

    Each direction not yet exact is rounded (:func:`sudl.rounding.round_directions`); those whose column has
    at least ``min_zero_fraction``·m' exact zeros pass the sparsity filter; b linearly independent
    ones are kept, most exact zeros first.  If fewer than b pass, the rest is filled with the
    best remaining directions and then by the orthogonal complement of those kept, marked not exact.
    """

    def __init__(self, min_zero_fraction=0.3, n_samples=64, random_state=None):
        self.min_zero_fraction = min_zero_fraction
        self.n_samples = n_samples
        self.random_state = random_state

    def fit_transform(self, fg, y=None):
        xp = array_namespace(fg.L)
        m, b = fg.L.shape
        # directions a search already made exact are kept as they are (rounding could move them)
        done = np.asarray(fg.exact, dtype=bool)
        todo = xp.asarray(np.flatnonzero(~done), dtype=xp.int64, device=device(fg.L))
        rounded = round_directions(fg.L * float(m) ** 0.5, xp.take(fg.directions, todo, axis=0),
                                   random_state=self.random_state, n_samples=self.n_samples, zero_tol=fg.zero_tol)
        keep = xp.asarray(np.flatnonzero(done), dtype=xp.int64, device=device(fg.L))
        rounded.directions = xp.concat([xp.take(fg.directions, keep, axis=0), rounded.directions], axis=0)
        rounded.n_zeros = np.concatenate([np.asarray(fg.n_zeros)[done], rounded.n_zeros]).astype(int)
        rounded.exact = np.concatenate([np.ones(int(done.sum()), bool), rounded.exact])
        passed = rounded.exact & (rounded.n_zeros >= self.min_zero_fraction * m)
        W = to_numpy(rounded.directions)
        kept = select_independent(W, rounded.n_zeros + passed * m)
        self.n_passed_ = int(passed.sum())
        if self.n_passed_ == 0:
            share = f" (>= {self.min_zero_fraction:.0%} of the neurons)" if self.min_zero_fraction else ""
            if fg.noisy:  # the approximate mode on a noisy update: the noise is the likely reason
                raise NoExactColumnError(
                    f"no column of dL/dZ with exact zeros (to the noise's tolerance) was found{share}: the update's noise "
                    "hides the ReLU's zeros at this layer (a defence's noise; nothing of the batch recovered), or the "
                    "search's time bound (max_time) ran out before it found one")
            raise NoExactColumnError(
                f"no column of dL/dZ with exact zeros was found{share}: "
                "the layer is not followed by a ReLU, the gradient is noisy (DP noise, several local steps), or the "
                "search's time bound (max_time) ran out before it found one")
        extra = complete_basis(W[kept])[: b - len(kept)]
        self.n_zeros_ = np.concatenate([rounded.n_zeros[kept], np.zeros(len(extra), int)])
        self.exact_ = np.concatenate([passed[kept], np.zeros(len(extra), bool)])
        D = xp.take(rounded.directions, xp.asarray(kept, dtype=xp.int64, device=device(fg.L)), axis=0)
        D = xp.concat([D, xp.asarray(extra, dtype=D.dtype, device=device(D))], axis=0)
        return fg.with_directions(D, self.n_zeros_, self.exact_)


SPARSITY_FILTER = 0.3
"""Fraction of the neurons a candidate column must vanish on (SPEAR's filter) in the searches that
sample candidates; :data:`EXACT_SEARCHES` do not need it."""
DEFAULT_MAX_TIME = 60.0
"""Seconds bound of the searches other than :data:`EXACT_SEARCHES` when ``max_time`` is None (arbitrary:
those searches have no stagnation test of their own)."""
APPROXIMATE_ZERO_TOL = 1e-2
"""Zero tolerance of the approximate mode when the update is noisy (DP-SGD; measured, ``docs/threat_models.md``).
An update of exact rank b (FedAvg) keeps the exact tolerance: with 1e-2, two-step FedAvg updates of
the zoo's clients were inverted to 9 dB (mlp2_raw), 7 dB (mlp2_grey28), −2.5 dB (mlp2_sklearn_photos),
with the exact tolerance to 150 dB (``docs/results.md``, ``docs/threat_models_zoo.md``)."""
APPROXIMATE_NEXT_LAYER_RTOL = 0.35
"""How loosely W₂ᵀu must fit a column in the approximate mode (FedAvg's W₂ drifts: residuals 0.1–0.3 measured)."""


def make_pipeline(method=None, *, batch_size=None, random_state=None, max_time=None, min_zero_fraction=None,
                  weight=None, bias=None, next_weight=None, downstream=None, next_bias_grad=None, next_weight_grad=None,
                  zero_tol=None, approximate=False, rounding=None, with_bias_span=False, verbose=0):
    """Build the attack pipeline; ``Pipeline.fit_transform(stack_gradient(grad_W, grad_b))`` → X.

    method: a name of :data:`gradinv.search.SEARCHES`, or None (default) for the strongest search
    what is given allows (:meth:`gradinv.knowledge.Knowledge.default_search`): "informed" (needs ``weight``, ``bias`` and ``next_weight`` or ``downstream``: the attacked
    layer's parameters and the classifier or network its ReLU feeds, all known to the server;
    :mod:`gradinv.search`, :mod:`gradinv.downstream`;
    ``next_bias_grad``, the classifier's bias gradient, optionally steers it to the classes missing),
    "logcosh" / "l1" / "l4" (a ``sudl`` solver on L, gradient only), or "spear" (SPEAR's sampling).
    With ``weight`` and ``bias`` every certified sample is checked against the ReLU pattern it
    must produce; without them no sample is certified.  ``max_time`` (seconds) caps the search;
    by default (None) the informed and cell searches run until they stagnate (:mod:`gradinv.bound`)
    and the others for :data:`DEFAULT_MAX_TIME`.

    ``approximate=True`` is for updates whose zeros are no longer exact (DP-SGD noise) or whose
    classifier drifted (FedAvg): the zero tolerance becomes :data:`APPROXIMATE_ZERO_TOL` where the
    factors show noise (unless ``zero_tol`` is given), the informed search's next-layer check
    :data:`APPROXIMATE_NEXT_LAYER_RTOL`, the batch size is read from a smaller singular-value gap
    (10 instead of 100) or, without one, from the noise edge (:func:`~gradinv.factorize.noise_edge_rank`),
    and no sample is certified.  ``rounding``: the gradient's relative rounding error (default: ε of
    its dtype; :class:`~gradinv.factorize.GradientFactorization`).  ``with_bias_span``: factor
    col([dL/dW | dL/db]) where dL/db leaves col(dL/dW) (:class:`~gradinv.factorize.GradientFactorization`).
    """
    knowledge = Knowledge(weight, bias, next_weight, downstream, next_bias_grad)
    solver = knowledge.default_search() if method is None else method
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if max_time is None and solver not in EXACT_SEARCHES:
        max_time = DEFAULT_MAX_TIME
    if min_zero_fraction is None:  # the sparsity filter of the searches that sample candidates
        min_zero_fraction = 0.0 if solver in EXACT_SEARCHES else SPARSITY_FILTER
    options = {}
    if solver in ("informed", "cells", "spear", "spear++"):
        options["min_zero_fraction"] = min_zero_fraction
    if solver == "informed" and approximate:
        options["next_layer_rtol"] = APPROXIMATE_NEXT_LAYER_RTOL
    if solver == "cells" and approximate:
        options["drift"] = APPROXIMATE_DRIFT
    search = SearchStep(solver, knowledge, options, random_state=random_state, max_time=max_time, verbose=verbose)
    return Pipeline([
        ("factorize", GradientFactorization(batch_size=batch_size, zero_tol=zero_tol, rounding=rounding,
                                            min_gap=10.0 if approximate else 100.0,
                                            noisy_zero_tol=APPROXIMATE_ZERO_TOL if approximate else None,
                                            noise_rank=approximate, with_bias_span=with_bias_span)),
        ("search", search),
        ("rounding", ExactRounding(min_zero_fraction=min_zero_fraction, random_state=random_state)),
        ("last_column", LastColumn(weight=weight, bias=bias,
                                   downstream=downstream if downstream is not None else next_weight)),
        ("reconstruct", InputReconstruction(weight=weight, bias=bias,
                                            downstream=downstream if downstream is not None else next_weight,
                                            next_weight_grad=next_weight_grad, certify=not approximate)),
    ])


@dataclass
class InversionResult:
    """The reconstructed batch and its certificates.

    inputs : (b, n) array of the caller's array type, one reconstructed input per row, in any order
    exact : (b,) bool, per-sample certificate that the sample is exactly the client's (needs the
        layer's weight and bias; all False without them and in approximate mode)
    sparse : (b,) bool, the gradient-only test (exact sparse column); not a proof
    batch_size : int, b (given or estimated from the singular values), less the dependent inputs
    n_dependent_inputs : int, inputs that duplicate (or are combinations of) others: the given
        batch size minus the rank of dL/dW; only the independent ones can be recovered
    grad_Z : (m, b) recovered dL/dZ
    n_zeros : (b,) exact zeros of each recovered column
    labels, label_margin : (b,) labels read from the columns (:mod:`gradinv.labels`) and how
        clearly each is singled out; None without ``next_weight``
    approximate : bool, the approximate mode was used (no certificates)
    solver : the direction search used; ``search_reason`` says why (given, or chosen by what the
        server knows: :meth:`~gradinv.knowledge.Knowledge.search_reason`)
    time : seconds
    mode : "exact" or "approximate"; ``mode_reason`` says why (given, or what the update showed)
    certificate_reason : (b,) str, why each sample is or is not certified: "certified: layer",
        "certified: end to end" (:mod:`gradinv.end_to_end`), or what is missing (see
        :class:`~gradinv.reconstruct.InputReconstruction`)
    end_to_end : str, the outcome of the end-to-end check (:mod:`gradinv.end_to_end`)
    layer_exact : (b,) bool, the layer-level certificate alone (``exact`` before that check)
    multiplicity : (b,) int, how many times the client sent each recovered input (an exact
        duplicate is one column, one input, sent twice, with one label or two), from the end-to-end
        check when it passed (:func:`gradinv.end_to_end.label_counts`); None where it was not made
    label_counts : (b, C) int, how many times each recovered input was sent with each label, where
        some input was sent more than once (None otherwise, and where the check was not made)
    """

    inputs: object
    exact: np.ndarray
    sparse: np.ndarray
    batch_size: int
    grad_Z: object
    n_zeros: np.ndarray
    labels: np.ndarray
    label_margin: np.ndarray
    n_dependent_inputs: int
    approximate: bool
    solver: str
    time: float
    pipeline: Pipeline
    mode: str = "exact"
    mode_reason: str = ""
    certificate_reason: np.ndarray = None
    end_to_end: str = "not made: invert_layer alone (attack_model checks the model's gradients)"
    layer_exact: np.ndarray = None
    search_reason: str = ""
    multiplicity: np.ndarray = None
    label_counts: np.ndarray = None

    def outcome(self):
        """What was recovered, by kind of sample: a dict of counts.

        ``exact``: recovered inputs certified exact; ``shared``: the sample counts of the inputs that
        stand for several samples (:attr:`multiplicity` > 1: sent more than once, or inputs closer
        than the gradient resolves; not certified); ``groups``: the sizes of the blocks of inputs
        known only by their span (:func:`~gradinv.certificate.proven_blocks`), members not
        certified (a group of 1: its block's other members are exact); ``not_exact``: the other inputs
        not certified; ``dependent``: inputs the rank of dL/dW does not show (duplicates or combinations
        of others) whose count the end-to-end check did not read (:attr:`n_dependent_inputs`)."""
        exact = np.asarray(self.exact, bool)
        copies = np.ones(len(exact), int) if self.multiplicity is None else np.asarray(self.multiplicity, int)
        shared = ~exact & (copies > 1)
        block = self.pipeline.named_steps["reconstruct"].block_
        grouped = (block >= 0) & ~exact & ~shared
        groups = sorted((int(np.sum(grouped & (block == g))) for g in np.unique(block[grouped])), reverse=True)
        return dict(exact=int(exact.sum()), shared=sorted(copies[shared].tolist(), reverse=True), groups=groups,
                    not_exact=int(np.sum(~exact & ~grouped & ~shared)),
                    dependent=0 if self.multiplicity is not None else int(self.n_dependent_inputs))

    def describe(self):
        """One sentence from :meth:`outcome`, e.g. "18 inputs recovered exactly; 1 input standing for 2
        samples (...); a group of 2 inputs known only by their span; 1 input not recovered exactly"."""
        o = self.outcome()
        plural = lambda k, word: f"{k} {word}{'s' * (k != 1)}"  # noqa: E731
        parts = [f"{plural(o['exact'], 'input')} recovered exactly"]
        parts += [f"1 input standing for {k} samples (sent {k} times, or {k} inputs closer than the gradient "
                  "resolves)" for k in o["shared"]]
        parts += [f"a group of {g} inputs known only by their span" if g > 1 else
                  "1 input known only by the span it shares with an exact one" for g in o["groups"]]
        if o["not_exact"]:
            parts.append(f"{plural(o['not_exact'], 'input')} not recovered exactly")
        if o["dependent"]:
            parts.append(f"{plural(o['dependent'], 'input')} duplicating or combining others (count unknown)")
        return "; ".join(parts)


def _fit_detecting_noise(build, grad, approximate):
    """Fit the pipeline ``build(approximate)`` on ``grad``; ``approximate=None``: detect a noisy update.

    The evidence, in this order, so that a clean gradient is factored and searched once: from
    the factorisation, before any search, no rank gap at the exact mode's min_gap
    (:class:`~gradinv.factorize.NoRankGapError`) or a rank-b residual above rounding
    (:func:`~gradinv.factorize.noise_evidence`, DP-SGD); then the exact search finding no
    column with exact zeros (:class:`~gradinv.factorize.NoExactColumnError`, multi-step FedAvg).
    Any of them: the attack runs again in the approximate mode.  In the approximate mode the
    factorisation runs first, and ``build(True, noisy=True)`` gives the pipeline searched when it
    shows noise (:attr:`~gradinv.factorize.FactorizedGradient.noisy`).  Returns (pipeline, X,
    approximate, noisy, reason): the mode used, and whether the noisy update's pipeline ran.
    """
    if approximate is False:
        pipe = build(False)
        return pipe, pipe.fit_transform(grad), False, False, "approximate=False given"
    if approximate is None:
        pipe = build(False)
        factorize = pipe.named_steps["factorize"]
        try:
            fg = factorize.fit_transform(grad)
            reason = noise_evidence(factorize)
            if reason is None:
                return pipe, pipe[1:].fit_transform(fg), False, False, \
                    "detected: exact (rank b to rounding, exact zeros found)"
        except (NoRankGapError, NoExactColumnError) as e:
            reason = str(e)
        reason = f"detected: noisy update ({reason})"
    else:
        reason = "approximate=True given"
    pipe = build(True)
    fg = pipe.named_steps["factorize"].fit_transform(grad)
    if fg.noisy:
        searched = build(True, noisy=True)
        searched.steps[0] = pipe.steps[0]  # the fitted factorisation
        pipe = searched
    return pipe, pipe[1:].fit_transform(fg), True, fg.noisy, reason


NOISY_SEARCH = "cells"
"""The default search of a noisy update (a residual beyond rank b: DP-SGD noise; also FedAvg through a
conv front end, whose features move between local steps, so that the update has rank E·b) in the
approximate mode, where the layer's W and b are known: the zeros alone (:mod:`gradinv.search.arrangement`), not
the next layer's fit, whose residual the noise spoils.  Measured, DP-SGD σ = 1e-5, C = 1, b = 20, m = 1000
(``benchmarks/threat_models.py --sections zoo``, ``docs/threat_models_zoo.md``): ≥ 30 dB on 32 of the
zoo's 36 rows (18 kinds, seeds 0 and 1; 45 of 54 with seed 2), against 15 with the informed search on the 2-layer kinds and no
column on the deep ones; the project's own cross-entropy victim 86.6 / 67.6 dB at σ = 1e-6 / 1e-5
(informed 88.4 / 68.4).  An update of exact rank (FedAvg) keeps the default search: on five 2-layer
FedAvg rows the cell search was better on two and worse on two.  Neither wins everywhere, so where the
whole model is known :func:`gradinv.models.attack_model` runs both and keeps the batch that explains
every gradient sent best (:meth:`~gradinv.knowledge.Knowledge.approximate_searches`)."""


def _with_bias_span(build, grad, pipe, X, mode_reason):
    """(pipeline, X, reason): ``pipe`` fitted again on col([dL/dW | dL/db]) where dL/db left col(dL/dW) and
    no pair was split (:mod:`gradinv.collinear`), within what is left of ``max_time``; kept when a column
    found uses dL/db's own direction (a pair x₂ = α x₁ then has both its columns in col(L); a dL/db that is
    not the client's adds a direction no sparse column uses) and more inputs are exact.  Measured
    (``benchmarks/frontier.py --zoo mlp3_grey_sky --batch-sizes 100``, seed 0, ``docs/zoo_quirks_m1000.md``):
    the split failed after 98 columns, no input exact; with dL/db's direction 100 columns, 98 inputs exact
    and certified, the white and the near-white frame (one ReLU pattern) a group known by its span."""
    rec, factorize = pipe.named_steps["reconstruct"], pipe.named_steps["factorize"]
    if rec.pair_ is not None or rec.bias_residual_ <= factorize.zero_tol_:
        return pipe, X, mode_reason
    again = build(False, with_bias_span=True)
    X_again = again.fit_transform(grad)
    if not again.named_steps["factorize"].bias_axis_:
        return pipe, X, mode_reason
    found = np.asarray(to_numpy(again.named_steps["search"].result_.directions), np.float64)
    # a column of col(dL/dW) has no part along dL/db's direction beyond rounding; √zero_tol is far above that
    uses_bias = found.size and np.max(np.abs(found[:, -1]) / np.linalg.norm(found, axis=1)) > factorize.zero_tol_ ** 0.5
    if not uses_bias or again.named_steps["reconstruct"].exact_.sum() <= rec.exact_.sum():
        return pipe, X, mode_reason
    return again, X_again, mode_reason + ("; dL/db leaves col(dL/dW) (inputs that are multiples of one another): "
                                          "factored with dL/db's direction added")


def _jacobians_at(X, weight, bias, next_weight, downstream):
    """W₂ (C × m), or the downstream Jacobians J(h_j) (b × C × m) at the recovered inputs' activations
    h_j = ReLU(W x_j + b): exact where x_j is, so the labels read from them are too."""
    if downstream is None:
        return next_weight
    W, bias = (np.asarray(to_numpy(a), np.float64) for a in (weight, bias))
    down = as_downstream(downstream, W.shape[0])  # already a Downstream from invert_layer: no copy
    if down.is_linear:
        return down.weight.numpy()
    import torch

    H = torch.relu(torch.as_tensor(np.asarray(to_numpy(X), np.float64)) @ torch.as_tensor(W).T + torch.as_tensor(bias))
    return down.jacobians(H).mT.numpy()


def invert_layer(grad_W, grad_b, *, batch_size=None, solver=None, weight=None, bias=None, next_weight=None,
                 downstream=None, next_bias_grad=None, next_weight_grad=None, random_state=None, max_time=None,
                 zero_tol=None, approximate=None, rounding=None, verbose=0):
    """Invert a linear+ReLU layer's gradient: the client's inputs X from dL/dW and dL/db.

    ``weight``/``bias``: the layer's parameters (needed for certificates); ``next_weight``: the
    classifier fed by the layer's ReLU (also gives the labels); ``downstream``: instead, the whole
    network after the layer's ReLU (an ``nn.Module`` from its activations to the logits, any depth:
    the search then uses its Jacobian at each candidate, :mod:`gradinv.downstream`);
    ``next_bias_grad``: the classifier's
    bias gradient (optional, sent by the client with the rest; one mean cross-entropy step's, so
    not for DP-SGD or FedAvg updates); ``next_weight_grad``: the weight gradient dL/dW₂ of the Linear a
    deeper ``downstream`` starts with (sent with the rest; it splits two inputs that are multiples of
    one another, :func:`~gradinv.collinear.find_pair_by_activations`).  ``solver`` defaults to
    :meth:`~gradinv.knowledge.Knowledge.default_search`'s, and in the
    approximate mode a noisy update (DP-SGD) gets :data:`NOISY_SEARCH` instead, where the layer's W
    and b are known (``mode_reason`` says so); ``approximate`` for DP-SGD or FedAvg updates (see
    :func:`make_pipeline`): None (default) detects them from the update itself
    (:func:`_fit_detecting_noise`), True or False forces the mode.  ``rounding``: the relative
    rounding error of the gradient (default: ε of its dtype); an update read off parameters,
    (θ₀ − θ₁)/η, carries θ's rounding, ε·‖W₀‖/‖W₀ − W₁‖ of it (:func:`gradinv.models.pseudo_gradients`).  Arrays in, the same array type
    out (NumPy, torch, CuPy).  Bad arguments raise ``TypeError`` or ``ValueError`` naming them
    (:mod:`gradinv._checks`).
    """
    checked = check_layer_arguments(grad_W, grad_b, weight=weight, bias=bias, next_weight=next_weight,
                                    next_bias_grad=next_bias_grad, next_weight_grad=next_weight_grad,
                                    batch_size=batch_size, max_time=max_time,
                                    zero_tol=zero_tol, approximate=approximate, rounding=rounding)
    grad_W, grad_b, weight, bias, next_weight, next_bias_grad, next_weight_grad = (checked[k] for k in (
        "grad_W", "grad_b", "weight", "bias", "next_weight", "next_bias_grad", "next_weight_grad"))
    batch_size, max_time, zero_tol, approximate, rounding = (checked[k] for k in (
        "batch_size", "max_time", "zero_tol", "approximate", "rounding"))
    if downstream is not None:  # checked (and its copies made) once, for the search and the labels
        downstream = as_downstream(downstream, grad_W.shape[0])
    chosen = solver is None
    if chosen:
        knowledge = Knowledge(weight, bias, next_weight, downstream)
        solver, search_reason = knowledge.default_search(), f"chosen by what is known: {knowledge.search_reason()}"
    else:
        search_reason = f"solver={solver!r} given"
    noisy_solver = NOISY_SEARCH if chosen and solver in EXACT_SEARCHES else solver
    start = time.perf_counter()

    built = []  # the searches built, the last one running

    def build(approximate, noisy=False, with_bias_span=False):
        built.append(noisy_solver if noisy else solver)
        left = max_time  # the search again with dL/db's direction has what is left of the bound
        if with_bias_span and max_time is not None:
            left = max_time - (time.perf_counter() - start)
        return make_pipeline(built[-1], batch_size=batch_size,
                                   random_state=random_state, max_time=left, weight=weight, bias=bias,
                                   next_weight=next_weight, downstream=downstream, next_bias_grad=next_bias_grad,
                                   next_weight_grad=next_weight_grad, zero_tol=zero_tol, approximate=approximate,
                                   rounding=rounding, with_bias_span=with_bias_span, verbose=verbose)

    grad = stack_gradient(grad_W, grad_b)
    try:
        pipe, X, approximate, noisy, mode_reason = _fit_detecting_noise(build, grad, approximate)
    except NoExactColumnError as e:
        e.solver = built[-1]  # the search that found nothing (gradinv.models.attack_model tries the others)
        raise
    if not approximate and (max_time is None or time.perf_counter() - start < max_time):
        pipe, X, mode_reason = _with_bias_span(build, grad, pipe, X, mode_reason)
    if noisy and noisy_solver != solver:
        solver = noisy_solver
        mode_reason += f"; a noisy update: {noisy_solver} search (its zeros alone)"
        search_reason += f"; {noisy_solver} instead on a noisy update (its zeros alone)"
    rec, factorize = pipe.named_steps["reconstruct"], pipe.named_steps["factorize"]
    if factorize.batch_size_source_ == "noise edge":
        mode_reason += (f"; batch size {factorize.batch_size_} read from the noise edge of the singular values "
                        "(no rank gap; gradinv.factorize.noise_edge_rank)")
    labels = margin = None
    if next_weight is not None or (downstream is not None and weight is not None and bias is not None):
        labels, margin = infer_labels(rec.grad_Z_, _jacobians_at(X, weight, bias, next_weight, downstream),
                                      zero_tol=factorize.zero_tol_)
    split = rec.pair_ is not None  # one column split into two inputs: one more than the rank
    return InversionResult(inputs=X, exact=rec.exact_, sparse=rec.sparse_, batch_size=factorize.batch_size_ + split,
                           grad_Z=rec.grad_Z_, n_zeros=rec.n_zeros_, labels=labels, label_margin=margin,
                           n_dependent_inputs=max(factorize.n_dependent_inputs_ - split, 0),
                           approximate=approximate, solver=solver, time=time.perf_counter() - start, pipeline=pipe,
                           mode="approximate" if approximate else "exact", mode_reason=mode_reason,
                           certificate_reason=rec.reasons_, layer_exact=rec.exact_.copy(), search_reason=search_reason)
