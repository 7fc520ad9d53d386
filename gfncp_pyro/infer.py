"""Posterior inference over partitions with a GFNCP guide: thin, vectorised helpers.

With the guide's ``q(c | x)`` as proposal (Eq. (30) in [1]) and the collapsed joint of the CRP
mixture (Eq. (1) in [1], means integrated out),

    log w(c) = log p(c, x) - log q(c | x),      log p(c, x) = log CRP(c) + log p(x | c),

* :func:`importance`: self-normalised importance sampling; ``S`` partitions are decoded in one
  vectorised pass and weighted at once. It warns (:class:`LowESSWarning`) when the effective
  sample size is under 5 % of ``S``: the estimates then rest on a few samples. The weights are those of ``pyro.infer.Importance`` with
  a :class:`~gfncp_pyro.guides.GFNCPGuide` (its means come from their exact posterior), without
  ``S`` Python traces. Returns the weighted samples, the estimate
  ``log p(x) ~ logsumexp(log w) - log S`` and the effective sample size
  ``(sum w)^2 / sum w^2``;
* :func:`independence_mh`: Metropolis-Hastings with ``q`` as an independent proposal, accepting
  ``c' `` with probability ``min(1, w(c') / w(c))``; its samples follow the exact posterior of
  the Pyro model as the chain grows (``q > 0`` everywhere). Any fixed order gives such a
  proposal; a guide with random orders draws one order per call and proposes along it;
* :func:`posterior_table`, :func:`co_clustering`, :func:`map_partition`,
  :func:`total_variation`: summaries of weighted samples;
* :func:`fit`: fine-tunes a guide on one data set, by reweighted wake-sleep [2] (wake-phi:
  minimise ``-sum_s w_s log q(c_s | x)`` with self-normalised weights) or by the score-function
  gradient of the ELBO with a leave-one-out baseline.

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
[2] J. Bornschein, Y. Bengio. Reweighted Wake-Sleep. ICLR 2015.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Literal, NamedTuple

import torch

from .distributions import ChineseRestaurantProcess
from ._checks import check_int
from .guides import GFNCPGuide
from .metrics import _check_labels, _normalised_log_weights, co_clustering, total_variation  # re-exported
from .models import CRPMixture

__all__ = [
    "LOW_ESS_FRACTION",
    "LowESSWarning",
    "warn_if_low_ess",
    "ImportanceResult",
    "MHResult",
    "PartitionTable",
    "collapsed_log_joint",
    "importance",
    "independence_mh",
    "posterior_table",
    "total_variation",
    "co_clustering",
    "map_partition",
    "fit",
]

LOW_ESS_FRACTION = 0.05
"""An effective sample size under this fraction of the samples triggers :class:`LowESSWarning`."""


class LowESSWarning(UserWarning):
    """Importance weights concentrate on a few samples: the estimates are unreliable."""


def warn_if_low_ess(ess: float, num_samples: int, what: str = "importance sampling") -> bool:
    """Warn (:class:`LowESSWarning`) when ``ess < LOW_ESS_FRACTION * num_samples``.

    :returns: whether it warned.
    """
    if not ess < LOW_ESS_FRACTION * num_samples:
        return False
    warnings.warn(
        f"{what}: effective sample size {ess:.1f} is under {LOW_ESS_FRACTION:.0%} of the "
        f"{num_samples} samples, so the weighted posterior and the log-evidence rest on a few "
        "samples and are unreliable. Draw more samples, fine-tune the guide on this data set "
        "(gfncp_pyro.infer.fit), use a guide trained on sets like this one (size, spread), or "
        "check that the model's hyper-parameters are those the network was trained for",
        LowESSWarning, stacklevel=3,
    )
    return True


class ImportanceResult(NamedTuple):
    """Weighted posterior samples from :func:`importance`.

    :ivar labels: canonical labels ``(S, N)``.
    :ivar log_weights: ``log p(c, x) - log q(c | x)`` ``(S,)`` (unnormalised).
    :ivar log_joint: ``log p(c, x)`` ``(S,)``.
    :ivar log_evidence: the estimate ``logsumexp(log_weights) - log S`` of ``log p(x)``.
    :ivar ess: effective sample size ``1 / sum_s wbar_s^2`` of the normalised weights.
    """

    labels: torch.Tensor
    log_weights: torch.Tensor
    log_joint: torch.Tensor
    log_evidence: torch.Tensor
    ess: torch.Tensor


class MHResult(NamedTuple):
    """Samples of the independence Metropolis-Hastings chain of :func:`independence_mh`.

    :ivar labels: canonical labels of the chain's states ``(S, N)``, in chain order.
    :ivar log_joint: ``log p(c, x)`` of each state ``(S,)``.
    :ivar acceptance_rate: fraction of accepted proposals.
    """

    labels: torch.Tensor
    log_joint: torch.Tensor
    acceptance_rate: float


class PartitionTable(NamedTuple):
    """A distribution over distinct partitions, most probable first.

    :ivar labels: canonical labels ``(U, N)``, distinct rows.
    :ivar log_probs: normalised log-probabilities ``(U,)``.
    """

    labels: torch.Tensor
    log_probs: torch.Tensor


def _check_guide(guide) -> GFNCPGuide:
    if not isinstance(guide, GFNCPGuide):
        raise ValueError(f"guide must be a gfncp_pyro.guides.GFNCPGuide, got {type(guide).__name__}")
    return guide


def collapsed_log_joint(model: CRPMixture, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``log p(c, x)`` of the CRP mixture with the means integrated out, for many partitions.

    ``log CRP(c | alpha) + log p(x | c)`` (Ewens' formula and the conjugate marginal
    :meth:`~gfncp_pyro.likelihoods.IsotropicGaussian.log_marginal`), the same for every variant
    of the model. No loop.

    :param CRPMixture model: the model.
    :param torch.Tensor x: one set ``(N, D)``.
    :param torch.Tensor labels: canonical labels ``(S, N)`` or ``(N,)``.
    :returns: ``(S,)`` (``()`` for one partition), in ``x``'s dtype.
    """
    if not isinstance(model, CRPMixture):
        raise ValueError(f"model must be a gfncp_pyro.models.CRPMixture, got {type(model).__name__}")
    x = model.check_points(x)
    labels = torch.as_tensor(labels, device=x.device)
    if labels.ndim not in (1, 2) or labels.shape[-1] != x.shape[0]:
        raise ValueError(
            f"labels must have shape (S, {x.shape[0]}) or ({x.shape[0]},), got {tuple(labels.shape)}"
        )
    alpha = torch.tensor(model.alpha, dtype=x.dtype, device=x.device)
    prior = ChineseRestaurantProcess(alpha, x.shape[0], validate_args=True).log_prob(labels)
    return prior + model.likelihood.log_marginal(x, labels)


def _proposals(model, guide, x, num_samples, generator):
    """``S`` draws of the guide's ``q(c | x)`` with ``log q`` and ``log p(c, x)``."""
    guide = _check_guide(guide)
    x = model.check_points(x)
    with torch.no_grad():
        q = guide.partition_distribution(x, generator=generator)
        labels = q.sample((num_samples,))
        log_q = q.log_prob(labels).to(x.dtype)
        labels = labels.to(x.device)
        return labels, log_q, collapsed_log_joint(model, x, labels)


def importance(
    model: CRPMixture,
    guide: GFNCPGuide,
    x: torch.Tensor,
    num_samples: int = 1000,
    *,
    generator: torch.Generator | int | None = None,
    warn: bool = True,
) -> ImportanceResult:
    """Importance sampling of the posterior over partitions with the guide as proposal.

    All samples are decoded in one pass (:func:`gfncp_pyro.decoding.sample`), their ``log q``
    comes with them, and the collapsed joint is evaluated for all at once.

    :param CRPMixture model: the target model.
    :param GFNCPGuide guide: the proposal (its order setting is used; one order for all samples).
    :param torch.Tensor x: one set ``(N, D)``.
    :param int num_samples: ``S``.
    :param generator: a :class:`torch.Generator` or ``int`` seed (default: the guide's).
    :param bool warn: warn (:class:`LowESSWarning`) when the effective sample size is under
        :data:`LOW_ESS_FRACTION` of ``num_samples``.
    :returns: :class:`ImportanceResult`, in ``x``'s dtype.
    """
    num_samples = check_int(num_samples, "num_samples", 1)
    labels, log_q, log_joint = _proposals(model, guide, x, num_samples, generator)
    log_weights = log_joint - log_q
    log_normalised = log_weights - torch.logsumexp(log_weights, 0)
    ess = torch.exp(-torch.logsumexp(2 * log_normalised, 0))
    if warn:
        warn_if_low_ess(float(ess), num_samples, "gfncp_pyro.infer.importance")
    return ImportanceResult(
        labels=labels,
        log_weights=log_weights,
        log_joint=log_joint,
        log_evidence=torch.logsumexp(log_weights, 0) - math.log(num_samples),
        ess=ess,
    )


def _mh_indices(log_weights: list[float], log_uniforms: list[float]) -> tuple[list[int], int]:
    """The independence MH chain over proposals ``0..T-1``: the state index at every step.

    Starts at proposal 0; proposal ``t`` replaces the current state ``i`` when
    ``log u_t < log w_t - log w_i``. Sequential by nature (one comparison per step).

    :returns: the state index per step and the number of accepted proposals.
    """
    current, accepted, states = 0, 0, [0]
    for t in range(1, len(log_weights)):
        if log_uniforms[t] < log_weights[t] - log_weights[current]:
            current, accepted = t, accepted + 1
        states.append(current)
    return states, accepted


def independence_mh(
    model: CRPMixture,
    guide: GFNCPGuide,
    x: torch.Tensor,
    num_samples: int = 1000,
    *,
    burn_in: int = 100,
    generator: torch.Generator | int | None = None,
) -> MHResult:
    """Independence Metropolis-Hastings over partitions with the guide's ``q`` as proposal.

    The ``burn_in + num_samples`` proposals and their weights are computed in one vectorised
    pass; only the accept/reject chain is sequential. The stationary distribution is the exact
    posterior ``p(c | x)`` of the model.

    :param int num_samples: states kept after ``burn_in`` (``>= 1``).
    :param int burn_in: states discarded at the start (``>= 0``).
    :param generator: a :class:`torch.Generator` or ``int`` seed for the proposals and the
        accept/reject uniforms (default: the guide's generator, see
        :class:`~gfncp_pyro.guides.GFNCPGuide`).
    :returns: :class:`MHResult`; the acceptance rate counts all ``burn_in + num_samples - 1``
        proposals after the initial state.
    """
    num_samples = check_int(num_samples, "num_samples", 1)
    burn_in = check_int(burn_in, "burn_in", 0)
    if isinstance(generator, int) and not isinstance(generator, bool):
        generator = torch.Generator().manual_seed(generator)
    total = burn_in + num_samples
    labels, log_q, log_joint = _proposals(model, guide, x, total, generator)
    source = generator if generator is not None else guide.generator
    uniforms = torch.rand(total, generator=source, dtype=torch.float64,
                          device=source.device if source is not None else None)
    states, accepted = _mh_indices((log_joint - log_q).tolist(), torch.log(uniforms).tolist())
    index = torch.tensor(states[burn_in:], device=labels.device)
    return MHResult(labels[index], log_joint[index], accepted / max(total - 1, 1))


def posterior_table(labels: torch.Tensor, log_weights: torch.Tensor | None = None) -> PartitionTable:
    """The weighted empirical distribution of samples over distinct partitions.

    :param torch.Tensor labels: canonical labels ``(S, N)``.
    :param torch.Tensor log_weights: unnormalised ``(S,)`` (default: equal weights).
    :returns: :class:`PartitionTable`, sorted by decreasing probability.
    """
    labels = _check_labels(labels)
    log_w = _normalised_log_weights(labels, log_weights)
    unique, inverse = torch.unique(labels, dim=0, return_inverse=True)
    peak = torch.full((unique.shape[0],), -math.inf, dtype=log_w.dtype, device=log_w.device)
    peak = peak.scatter_reduce(0, inverse, log_w, reduce="amax")
    peak = torch.where(torch.isfinite(peak), peak, 0.0)
    summed = torch.zeros_like(peak).index_add(0, inverse, torch.exp(log_w - peak[inverse]))
    log_probs = torch.log(summed) + peak
    order = torch.argsort(log_probs, descending=True)
    return PartitionTable(unique[order], log_probs[order])


def map_partition(result: ImportanceResult | MHResult) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampled partition of highest posterior probability (largest ``log p(c, x)``).

    :returns: ``(labels (N,), log_joint ())``.
    """
    best = torch.argmax(result.log_joint)
    return result.labels[best], result.log_joint[best]


def fit(
    guide: GFNCPGuide,
    x: torch.Tensor,
    num_steps: int = 100,
    *,
    num_particles: int = 8,
    objective: Literal["rws", "elbo"] = "rws",
    lr: float = 1e-4,
    generator: torch.Generator | int | None = None,
) -> torch.Tensor:
    """Fine-tune the guide's network on one data set of its model (Adam on the network).

    Each step draws ``num_particles`` partitions from ``q(c | x)``, weights them by
    ``log w = log p(c, x) - log q(c | x)`` (collapsed joint of ``guide.model``) and descends

    * ``"rws"`` (reweighted wake-sleep, wake-phi [2]): ``-sum_s wbar_s log q(c_s | x)``, the
      self-normalised estimate of ``KL(p(c | x) || q)`` up to a constant;
    * ``"elbo"``: ``-mean_s (log w_s - b_s) log q(c_s | x)``, the score-function gradient of
      the ELBO with the leave-one-out baseline ``b_s`` (needs ``num_particles >= 2``).

    :returns: per step, the estimate of ``log p(x)`` that the particles give:
        ``logsumexp(log w) - log S`` for ``"rws"``, ``mean(log w)`` (the ELBO) for ``"elbo"``,
        ``(num_steps,)``.
    """
    guide = _check_guide(guide)
    num_steps = check_int(num_steps, "num_steps", 1)
    num_particles = check_int(num_particles, "num_particles", 2 if objective == "elbo" else 1)
    if objective not in ("rws", "elbo"):
        raise ValueError(f"objective must be 'rws' or 'elbo', got {objective!r}")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if isinstance(generator, int) and not isinstance(generator, bool):
        generator = torch.Generator().manual_seed(generator)
    model = guide.model
    x = model.check_points(x)
    params = [p for p in guide.network.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the guide's network has no trainable parameters (requires_grad is False)")
    optimizer = torch.optim.Adam(params, lr=lr)
    history = []
    for _ in range(num_steps):
        q = guide.partition_distribution(x, generator=generator)
        labels = q.sample((num_particles,))
        log_q = q.log_prob(labels)
        log_w = (collapsed_log_joint(model, x, labels.to(x.device)).to(log_q) - log_q).detach()
        if objective == "rws":
            loss = -(torch.softmax(log_w, 0) * log_q).sum()
            history.append(torch.logsumexp(log_w, 0) - math.log(num_particles))
        else:
            baseline = (log_w.sum() - log_w) / (num_particles - 1)
            loss = -((log_w - baseline) * log_q).mean()
            history.append(log_w.mean())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return torch.stack(history)
