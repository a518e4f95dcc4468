"""The smooth objective over input coordinates c and its descent: how far mask(c) ⊙ J(c)ᵀu is from col(L)."""

import time

import torch


JACOBIAN_REFRESH = 10
"""Descent steps between evaluations of the downstream Jacobian J at the candidates (deep networks;
arbitrary, not measured)."""


def _project(M, Y):
    """Mᵀ Y for each candidate: M (m × k) shared by all or (B × m × k) one per candidate, Y (B × m × C)
    → (B × k × C); a shared M costs one matrix product for the whole batch."""
    if M.ndim == 2:
        B, m, C = Y.shape
        return (M.T @ Y.transpose(0, 1).reshape(m, B * C)).reshape(-1, B, C).transpose(0, 1)
    return M.mT @ Y


def _soft_objective(c, A, bias, L, J, tau, eye):
    """Smallest eigenvalue of D − (Lᵀ S Jᵀ)ᵀ(Lᵀ S Jᵀ) against D = J S Jᵀ, S = diag(sigmoid((A c + bias)/τ)),
    per row of c; ``J`` holds Jᵀ (m × C, shared, the classifier W₂ᵀ) or one per row of c (B × m × C)."""
    SJ = torch.sigmoid((c @ A.T + bias) / tau)[..., None] * J
    LK = _project(L, SJ)
    D = _project(J, SJ)
    chol = torch.linalg.cholesky(D + torch.finfo(D.dtype).eps ** 0.75 * eye)
    inv = torch.linalg.solve_triangular(chol, eye.expand_as(chol), upper=False)
    return torch.linalg.eigvalsh(inv @ (D - LK.transpose(1, 2) @ LK) @ inv.transpose(1, 2))[:, 0]


def _template_objective(c, A, bias, L, w, tau):
    """‖(I − L Lᵀ) y‖² / ‖y‖², y = sigmoid((A c + bias)/τ) ⊙ w, per row of c and of w = Jᵀ t:
    the soft objective with u fixed to a class template t (:func:`_round_templates`), no C × C
    eigenproblem."""
    y = torch.sigmoid((c @ A.T + bias) / tau) * w
    yy = (y * y).sum(1)
    return (yy - ((y @ L) ** 2).sum(1)) / yy


def as_jacobian(J):
    """``J`` as a function (candidates c, dtype) → Jᵀ: a fixed Jᵀ (m × C, the classifier W₂ᵀ) for every
    c, or ``J`` itself when it is already such a function (:meth:`SearchKnowledge.jacobians`)."""
    if callable(J):
        return J
    return lambda c, dtype: J.to(dtype)


def _descend(c0, basis, A, bias, L, jacobian, *, steps, lr, tau, deadline, templates=None, dtype=torch.float32,
             refresh=JACOBIAN_REFRESH):
    """Adam on the soft objective from each row of c0, moving c = t basisᵀ inside span(basis);
    computed in ``dtype`` (the descent only has to land in a cell: the rounding is exact).
    ``jacobian(c, dtype)``: Jᵀ at the candidates (:meth:`SearchKnowledge.jacobians`), re-evaluated
    every ``refresh`` steps when it depends on c (J is piecewise constant: its own derivative is 0).
    ``templates`` (rows t ∈ ℝ^C, one per start): u fixed to t (:func:`_template_objective`)."""
    c0, basis, A, bias, L = (a.to(dtype) for a in (c0, basis, A, bias, L))
    jacobian = as_jacobian(jacobian)
    t = (c0 @ basis).clone().requires_grad_(True)
    opt = torch.optim.Adam([t], lr=lr * float(c0.norm(dim=1).mean()) / L.shape[1]**0.5)
    tau0, tau1 = tau
    J = None
    for it in range(steps):
        if J is None or (J.ndim == 3 and it % refresh == 0):
            J = jacobian(t.detach() @ basis.T, dtype)
            eye = torch.eye(J.shape[-1], dtype=dtype)
            w = None if templates is None else (J @ templates.to(dtype)[..., None])[..., 0]
        temp = tau0 * (tau1 / tau0) ** (it / max(steps - 1, 1))
        c = t @ basis.T
        loss = (_soft_objective(c, A, bias, L, J, temp, eye) if w is None else
                _template_objective(c, A, bias, L, w, temp)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if time.perf_counter() > deadline:
            break
    return (t @ basis.T).detach().to(torch.float64)
