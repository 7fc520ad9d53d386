"""Training objectives as objects: GFNCP (Eq. 29 and Alg. 1 in [1]) and NCP (Eq. 11).

Each objective has ``loss(net, batch, generator, *, step=None, bf16=False) -> (loss, parts)``:
the scalar to minimise on one :class:`~gfncp_pyro.batch.SetBatch` (averaged over its
sets) and a dict of float diagnostics. The trainer only calls it; which terms exist, and how
they are weighted at iteration ``step``, is the objective's business.

GFNCP's terms, per set ``b`` (energies from one teacher-forced pass along the set's order):

- **balance** (weight ``mc_weight``, optionally scheduled): the marginal-consistency loss of
  Eq. (24) (``balance="flow"``) or its trajectory-balance form (``balance="trajectory"``), on
  every set, data and exploration; or ``balance="variance"``: trajectory balance with the
  log-partition function optimised out, the variance over several trajectories of the same set
  of ``log q(c | x, rho) + E[c_{1:N}]`` (the data partition along ``balance_orders`` random
  orders and ``balance_samples`` policy samples along their own orders). It is zero for every
  set iff the policy is the normalised reward for every order (Eq. 19), needs no learned
  ``log Z(x)`` (whose errors otherwise reach the policy as noise), and along orders alone it
  is the variance of ``log q(c | x, rho)`` over ``rho``: order dependence itself;
- **gauge** (weight ``delta``): a penalty that fixes the energy's free additive constant:
  ``"final"`` is Eq. (28), ``E[c_{1:N}]^2`` on every set; ``"first"`` penalises only the first
  state's energy ``E[c_1]``; ``"normalizer"`` the mean square of each non-terminal step's
  log-normaliser ``logsumexp_k(-E[t, k])`` (with ``flow="state"`` a direction that changes
  neither the policy nor any flow, so it fixes the energies' free per-state level without
  fighting the other terms); ``"none"`` adds nothing;
- **reward** (weight ``lambda_cd``, data sets only): ``"cd"``, the contrastive-divergence
  surrogate of Eqs. (26)-(27) with one policy sample, or ``"nll"``, the trajectory likelihood
  ``-log q(c | x, rho)`` (equal to Eq. 26 wherever the balance loss is zero).

References
----------
[1] I. Chelly, R. Uziel, O. Freifeld, A. Pakman. Consistent Amortized Clustering via
    Generative Flow Networks. AISTATS 2025.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import torch

from . import decoding, flows, losses, policy
from .background import Deferred, spare_core
from ._checks import check_int, finite_float
from .data.sets import random_step_subset
from .jsonable import JsonDataclass
from .nn import EnergyNet

if TYPE_CHECKING:  # pragma: no cover
    from .batch import SetBatch

__all__ = ["GFNCPObjective", "NCPObjective", "OBJECTIVES", "objective_class", "objective_from_dict",
           "first_state_energy", "energy_level"]


def first_state_energy(net: EnergyNet, encodings: policy.Encodings, orders: torch.Tensor,
                       mask: torch.Tensor, *, bf16: bool = False) -> torch.Tensor:
    """``E[c_1] = f(g(h(x_{rho_0})), U_1)`` per set ``(B,)`` (Eq. 15 in [1]): the energy of the
    state after the first (deterministic) step, without teacher forcing."""
    h, u = encodings
    first = orders[:, 0]
    rows = torch.arange(h.shape[0], device=h.device)
    u = torch.where(mask.unsqueeze(-1), u, 0.0)
    unassigned = u.sum(1) - u[rows, first]
    with torch.autocast(device_type=h.device.type, dtype=torch.bfloat16, enabled=bf16):
        G = net.g(h[rows, first])
        return net.f(G, unassigned).to(h.dtype)


def energy_level(steps: policy.StepEnergies, mask: torch.Tensor) -> float:
    """Mean ``|logsumexp_k(-E[t, k])|`` over the real steps of a teacher-forced pass: the level of
    the energies along the free direction that neither the likelihood nor the variance balance
    sees (a common shift of a step's energies). Logged to watch it drift: in float32 a level
    of ~1e7 leaves the policy no precision (without a gauge the level reached ~490 after 3,000
    iterations in the one run of four that did not diverge, ~1e7-3e8 in the three that did; with
    the default normaliser gauge it peaked at 88 early on and ended near 8, ``validation/results/ablation.md``)."""
    with torch.no_grad():
        return float(policy.step_log_normalizer(steps)[mask].abs().mean())


def _check_mc_steps(mc_steps) -> None:
    if mc_steps is not None and (isinstance(mc_steps, bool) or not isinstance(mc_steps, int) or mc_steps < 1):
        raise ValueError(f"mc_steps must be a positive integer or None, got {mc_steps!r}")


class _Objective(JsonDataclass):
    """JSON with the objective's name: ``{"name": "gfncp" | "ncp", ...fields}``."""

    name: ClassVar[str]

    def to_dict(self) -> dict:
        return {"name": self.name, **super().to_dict()}


def _step_subset(mc_steps: int | None, batch: "SetBatch", generator: torch.Generator):
    if mc_steps is None:
        return None
    lengths = batch.mask.sum(1)
    return random_step_subset(lengths.cpu(), mc_steps, generator).to(batch.mask.device)


@dataclass(frozen=True)
class NCPObjective(_Objective):
    """NCP's maximum likelihood, Eq. (11) in [1]: ``mean_b[-log q(c_b | x_b, rho_b)]`` along
    random orders.

    :param mc_steps: if set, the NLL is estimated on this many random steps per set (unbiased).
    :param int num_orders: orders per set: the batch's own and ``num_orders - 1`` more random
        ones, the NLL averaged over them (NCP's reference code trains with 6). The points are
        encoded once and shared by the orders' teacher-forced passes.
    :param gauge: ``"none"`` (NCP as published) or ``"normalizer"``: add ``delta`` times the mean
        square of each non-terminal step's log-normaliser along the batch's own order
        (:func:`~gfncp_pyro.losses.normalizer_gauge`). The likelihood is blind to a common shift
        of one step's energies, so without it their level drifts (:func:`energy_level`); the
        penalty changes no policy, it only pins that level.
    :param float delta: weight of the gauge term.
    """

    name: ClassVar[str] = "ncp"
    explores: ClassVar[bool] = False  # trains on data partitions only
    mc_steps: int | None = None
    num_orders: int = 1
    gauge: Literal["none", "normalizer"] = "none"
    delta: float = 0.0

    def __post_init__(self):
        self.check_literals()
        _check_mc_steps(self.mc_steps)
        check_int(self.num_orders, "num_orders", 1)
        if finite_float(self.delta, "delta") < 0:
            raise ValueError(f"delta must be a non-negative finite number, got {self.delta!r}")

    def loss(self, net: EnergyNet, batch: "SetBatch", generator: torch.Generator, *,
             step: int | None = None, bf16: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
        """``mean_b`` of the NLL averaged over ``num_orders`` orders (random draws from
        ``generator``: each order's step subset, then the next order)."""
        from .data.sets import random_orders

        encodings = policy.encode_points(net, batch.x, bf16=bf16)
        lengths = batch.mask.sum(1).cpu()
        nll, parts = 0.0, {}
        for r in range(self.num_orders):
            orders = batch.orders if r == 0 else random_orders(lengths, generator).to(batch.orders.device)
            subset = _step_subset(self.mc_steps, batch, generator)
            kwargs = {"step_subset": subset} if subset is not None else {}
            steps = policy.teacher_force(net, encodings, batch.labels, batch.mask, orders, bf16=bf16, **kwargs)
            nll = nll + losses.ncp_nll(steps)
            if r == 0:
                own = steps  # the batch's own order: its energy level and its gauge term
        nll = nll / self.num_orders
        parts["nll"] = float(nll.detach().mean())
        if own.step_subset is None:
            parts["energy_level"] = energy_level(own, batch.mask)
        if self.gauge == "normalizer":
            reg = losses.normalizer_gauge(own)
            parts["reg"] = float(reg.detach().mean())
            nll = nll + self.delta * reg
        return nll.mean(), parts


@dataclass(frozen=True)
class GFNCPObjective(_Objective):
    """GFNCP's objective (Eq. 29, Alg. 1 in [1]) with the choices of the module docstring.

    The field defaults are the package's default objective (the variance balance over 4 orders
    and 2 detached policy samples, weight 0 for 400 iterations then ramped to 0.1 over 400, the
    reward by the NLL averaged over the orders, the normaliser gauge at ``delta = 1e-4``: without
    it three runs of four diverged, their energies' free level drifting to ~1e7-3e8,
    ``validation/results/ablation.md``); :data:`gfncp_pyro.config.PAPER_OBJECTIVE` is the
    paper's (min-shifted flow balance, Eq. 28 gauge, CD reward).

    :param flow: state-flow parametrisation of the balance loss
        (:func:`~gfncp_pyro.losses.marginal_consistency`): ``"paper"``, ``"consistent"`` or
        ``"offset"`` (needs a network with ``flow_head=True``) or ``"state"`` (``state_head=True``).
    :param balance: ``"flow"`` (Eq. 24, a sum of squared per-step residuals),
        ``"trajectory"`` (the square of their sum, :func:`~gfncp_pyro.losses.trajectory_balance`)
        or ``"variance"`` (see the module docstring; ``flow`` is then irrelevant).
    :param int balance_orders: orders of the data partition per set for ``"variance"``
        (the batch's own order and ``balance_orders - 1`` more); the reward term averages
        the NLL over them.
    :param order_draw: ``"variance"`` only: how the extra ``balance_orders - 1`` orders of the
        data partition are drawn: ``"independent"`` uniformly random orders, or ``"nested"``:
        each one the batch's order with its first ``t`` entries shuffled (``t`` uniform on
        ``2..N``, :func:`~gfncp_pyro.data.sets.prefix_shuffled_orders`), so the trajectories
        differ only in their first ``t`` steps and the variance term measures the order
        dependence of the prefix marginals, down to short prefixes.
    :param int balance_samples: policy samples per set for ``"variance"``.
    :param balance_target: ``"variance"`` only: ``"mean"`` penalises each trajectory's
        ``delta = log q + E`` against the set's mean (the variance), ``"max"`` against the
        set's largest ``delta`` held fixed, so the term only lifts the orders (and samples) that
        lag behind and never pushes a data trajectory's likelihood down. Both are zero exactly
        when all ``delta`` agree.
    :param bool detach_reward: ``"variance"`` only: the rewards ``E[c_{1:N}]`` enter the balance
        term without gradient, so the term trains the policy towards order invariance and
        towards the reward (on its own samples) but never drags the reward towards the policy;
        the reward then learns from the likelihood term alone.
    :param reward: ``"cd"`` or ``"nll"``.
    :param float lambda_cd: weight of the reward term.
    :param float delta: weight of the gauge term.
    :param gauge: ``"final"`` (Eq. 28 on every set), ``"first"``, ``"normalizer"`` or ``"none"``.
    :param float mc_weight: weight of the balance term once fully on.
    :param int mc_warmup: iterations with balance weight 0 (likelihood only: the NCP solution
        first).
    :param int mc_ramp: iterations over which the balance weight then rises linearly to
        ``mc_weight``.
    :param int mc_calibrate: iterations, after the warm-up, during which the balance term is on
        at full weight but its gradient reaches only the log-flow offset head (the energies
        enter detached); then, over ``mc_ramp`` iterations, the gradient into the energies is
        ramped in instead of the weight. With ``flow="offset"`` this fits the offsets to the
        likelihood-trained energies first, so that the balance term starts from the small
        residuals of an almost consistent policy instead of the arbitrary per-state levels
        the likelihood leaves (it is blind to them). ``0``: the weight is ramped as above.
    :param explore: labels of the exploration sets (Alg. 1, line 9): ``"uniform"`` random
        partitions (drawn by the batch sampler) or ``"policy"`` samples of the current policy
        along the set's order (drawn here without gradient), i.e. states the policy visits.
    :param mc_steps: if set, the balance sum (and the NLL) on this many random steps per set.
    :param float order_weight: ``"variance"`` only: weight of an extra term, the variance of
        ``log q(c | x, rho)`` over the ``balance_orders`` orders of the data partition (order
        invariance on the data alone, independent of the reward), at full weight from the
        first iteration: turned on after a likelihood-only warm-up it meets the large order
        variance the likelihood leaves and the gradients explode (measured: gradient norms
        1e5-1e7 once its weight passed ~0.3, ``validation/results/ablation.md``). ``0``: off.
    :param order_target: the order term's target: ``"mean"``, the variance of ``log q`` over the
        orders, or ``"max"``, the mean square of each order's gap to the largest ``log q`` held
        fixed. The variance can also be lowered by flattening q (a flatter policy's log-probabilities
        spread less over orders); the gap to the best order only lifts the orders that lag.
    :param int sample_orders: ``order_weight > 0`` only: orders along which each of the
        ``balance_samples`` policy samples is scored (its own and ``sample_orders - 1`` more
        random ones); the order-variance term then also averages the variance of
        ``log q(c_s | x, rho)`` over each sample's orders, so order invariance is asked of the
        partitions the policy puts its mass on, not only of the data partition. ``1``: the data
        partition only.
    :param float beta: probability that a training set keeps its data partition; otherwise it
        gets an exploration partition (space exploration, Alg. 1 in [1]); the batch sampler
        draws which (:func:`~gfncp_pyro.train.draw_batch`).
    """

    name: ClassVar[str] = "gfncp"

    flow: Literal["consistent", "paper", "offset", "state"] = "consistent"
    balance: Literal["flow", "trajectory", "variance"] = "variance"
    balance_orders: int = 4
    order_draw: Literal["independent", "nested"] = "independent"
    balance_samples: int = 2
    balance_target: Literal["mean", "max"] = "mean"
    detach_reward: bool = True
    reward: Literal["cd", "nll"] = "nll"
    lambda_cd: float = 1.0
    delta: float = 1e-4
    gauge: Literal["final", "first", "normalizer", "none"] = "normalizer"
    mc_weight: float = 0.1
    mc_warmup: int = 400
    mc_ramp: int = 400
    mc_calibrate: int = 0
    explore: Literal["uniform", "policy"] = "uniform"
    mc_steps: int | None = None
    order_weight: float = 0.0
    order_target: Literal["mean", "max"] = "mean"
    sample_orders: int = 1
    beta: float = 1.0

    def __post_init__(self):
        self.check_literals()
        _check_mc_steps(self.mc_steps)
        for name in ("mc_warmup", "mc_ramp", "mc_calibrate"):
            check_int(getattr(self, name), name, 0)
        for name in ("delta", "lambda_cd", "mc_weight", "order_weight"):
            value = finite_float(getattr(self, name), name)
            if value < 0:
                raise ValueError(f"{name} must be a non-negative finite number, got {getattr(self, name)!r}")
        if not isinstance(self.detach_reward, bool):
            raise ValueError(f"detach_reward must be True or False, got {self.detach_reward!r}")
        if not 0.0 <= finite_float(self.beta, "beta") <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {self.beta}")
        for name in ("balance_orders", "balance_samples"):
            check_int(getattr(self, name), name)
        check_int(self.sample_orders, "sample_orders", 1)
        if self.order_target != "mean" and self.order_weight <= 0:
            raise ValueError(f"order_target={self.order_target!r} chooses the order term's target: it needs "
                             f"order_weight > 0, got {self.order_weight!r}")
        if self.sample_orders > 1 and (self.order_weight <= 0 or self.balance_samples < 1):
            raise ValueError(f"sample_orders={self.sample_orders} scores the policy samples for the order-variance "
                             f"term: it needs order_weight > 0 and balance_samples >= 1, got order_weight="
                             f"{self.order_weight!r}, balance_samples={self.balance_samples!r}")
        if self.balance == "trajectory" and (self.flow == "paper" or self.mc_steps is not None):
            raise ValueError("balance='trajectory' needs flow='consistent', 'offset' or 'state' and every step "
                             "(mc_steps=None)")
        if self.order_draw != "independent" and self.balance != "variance":
            raise ValueError(f"order_draw={self.order_draw!r} needs balance='variance' (it draws the variance "
                             f"term's orders), got balance={self.balance!r}")
        if self.order_weight < 0 or (self.order_weight > 0 and self.balance != "variance"):
            raise ValueError(f"order_weight must be >= 0 and needs balance='variance', got {self.order_weight!r} "
                             f"with balance={self.balance!r}")
        if self.balance == "variance":
            if self.mc_steps is not None:
                raise ValueError("balance='variance' needs every step: mc_steps must be None (for sampled steps "
                                 "use balance='flow', e.g. the paper's objective config.PAPER_OBJECTIVE)")
            if self.reward != "nll":
                raise ValueError("reward='cd' needs balance='flow' (the paper's objective: flow='paper', "
                                 "balance='flow', reward='cd'); balance='variance' learns the reward by the "
                                 "likelihood (reward='nll')")
            if self.order_weight > 0 and self.balance_orders < 2:
                raise ValueError("order_weight > 0 needs balance_orders >= 2 (the variance over orders of the "
                                 "data partition)")
            if self.balance_orders < 1 or self.balance_samples < 0 or self.balance_orders + self.balance_samples < 2:
                raise ValueError("balance='variance' needs balance_orders >= 1, balance_samples >= 0 and at "
                                 "least two trajectories per set")

    @property
    def explores(self) -> bool:
        """Training batches get exploration partitions (``beta < 1``, Alg. 1 in [1])."""
        return self.beta < 1.0

    def balance_weight(self, step: int | None) -> float:
        """Weight of the balance term at iteration ``step`` (``None``: fully on)."""
        if step is None:
            return self.mc_weight
        if step < self.mc_warmup:
            return 0.0
        if self.mc_ramp <= 0 or self.mc_calibrate > 0:
            return self.mc_weight
        return self.mc_weight * min(1.0, (step - self.mc_warmup + 1) / self.mc_ramp)

    def energy_gradient_scale(self, step: int | None) -> float:
        """Fraction of the balance term's gradient that reaches the energies (the rest of it
        only reaches the offset head): 0 while calibrating, then ramped to 1."""
        if step is None or self.mc_calibrate <= 0:
            return 1.0
        start = self.mc_warmup + self.mc_calibrate
        if step < start:
            return 0.0
        if self.mc_ramp <= 0:
            return 1.0
        return min(1.0, (step - start + 1) / self.mc_ramp)

    def _variance_loss(self, net: EnergyNet, batch: "SetBatch", generator: torch.Generator,
                       step: int | None, bf16: bool, background: bool) -> tuple[torch.Tensor, dict[str, float]]:
        """``balance="variance"``: the NLL averaged over ``balance_orders`` orders of the data
        partition plus the weighted variance of ``log q + E`` over those trajectories and
        ``balance_samples`` policy samples (module docstring), plus the gauge term."""
        from .data.sets import prefix_shuffled_orders, random_orders

        lengths = batch.mask.sum(1)
        encodings = policy.encode_points(net, batch.x, bf16=bf16)
        R, M = self.balance_orders, self.balance_samples
        if self.order_draw == "nested":
            orders = [batch.orders] + [prefix_shuffled_orders(batch.orders, lengths, generator) for _ in range(R - 1)]
        else:
            orders = [batch.orders] + [random_orders(lengths.cpu(), generator).to(batch.orders.device)
                                       for _ in range(R - 1)]
        labels = [batch.labels] * R
        if M:  # the generator's last draw: the samples can be decoded beside the data passes
            sample_orders = random_orders(lengths.cpu(), generator).to(batch.orders.device)
            detached = policy.Encodings(encodings.h.detach(), encodings.u.detach())
            drawn = Deferred(decoding.sample, net, batch.x, M, mask=batch.mask, orders=sample_orders,
                             generator=generator, encodings=detached, background=background)
        # One teacher-forced pass per trajectory: at batch 64, N = 100 a pass over the T * B
        # stacked sets costs 1.2-2x more per trajectory (memory traffic) than T passes of B.
        passes = [policy.teacher_force(net, encodings, lab, batch.mask, order, bf16=bf16)
                  for lab, order in zip(labels, orders)]
        if M:
            samples = drawn.result()[0]
            for j in range(M):
                labels.append(torch.where(batch.mask, samples[:, j], batch.labels))
                orders.append(sample_orders)
                passes.append(policy.teacher_force(net, encodings, labels[-1], batch.mask, sample_orders, bf16=bf16))
        log_q = torch.stack([policy.trajectory_log_prob(steps) for steps in passes])  # (T, B)
        sample_order_var = None
        if M and self.sample_orders > 1:  # each sample along more orders, for the order-variance term only
            extra = [random_orders(lengths.cpu(), generator).to(batch.orders.device) for _ in range(self.sample_orders - 1)]
            per_sample = []
            for j in range(M):  # sample j along its own order (already in log_q), then the extra ones
                passes_j = [policy.teacher_force(net, encodings, labels[R + j], batch.mask, order, bf16=bf16)
                            for order in extra]
                per_sample.append(torch.stack([log_q[R + j]] + [policy.trajectory_log_prob(steps) for steps in passes_j]))
            per_sample = torch.stack(per_sample)  # (M, sample_orders, B)
            sample_order_var = self._order_spread(per_sample, 1).mean(0)
        energy = torch.stack([losses.final_energy(steps) for steps in passes])
        energy = energy.detach() if self.detach_reward else energy
        if self.balance_target == "max":
            delta = log_q + energy
            balance = (delta - delta.detach().amax(0)).square().mean(0)
        else:
            balance = losses.trajectory_variance(log_q, energy)
        weight = self.balance_weight(step)
        total = weight * balance
        order_var = log_q[:R].var(0, correction=0) if R > 1 else None
        parts = {"mc": float(balance.detach().mean()), "mc_weight": weight,
                 "order_var": float(order_var.detach().mean()) if R > 1 else 0.0,
                 "energy_level": energy_level(passes[0], batch.mask)}
        if sample_order_var is not None:
            parts["sample_order_var"] = float(sample_order_var.detach().mean())
        if self.order_weight > 0:  # from the first iteration, at full weight (not on the balance schedule)
            spread = None
            if R > 1:  # "mean" is the variance logged above; "max" needs its own spread
                spread = order_var if self.order_target == "mean" else self._order_spread(log_q[:R], 0)
            if sample_order_var is not None:
                spread = sample_order_var if spread is None else (spread + sample_order_var) / 2
            total = total + self.order_weight * spread
        own = passes[0]._replace(state_features=None)
        reg = self._gauge(net, own, encodings, batch, losses.final_energy(own), bf16)  # the batch's own order
        loss = self._with_gauge(total, reg, parts)
        if self.lambda_cd > 0 and bool(batch.is_data.any()):
            loss = loss + self._data_term(-log_q[:R].mean(0)[batch.is_data], batch.is_data, parts, "nll")
        return loss, parts

    def _order_spread(self, log_q: torch.Tensor, dim: int) -> torch.Tensor:
        """The order term of ``log q`` over the orders along ``dim``: their variance
        (``order_target="mean"``) or the mean square of each order's gap to the best one, held
        fixed (``"max"``: lifts the orders that lag and pushes none down)."""
        if self.order_target == "max":
            return (log_q - log_q.detach().amax(dim, keepdim=True)).square().mean(dim)
        return log_q.var(dim, correction=0)

    def _with_gauge(self, total: torch.Tensor, reg: torch.Tensor | None, parts: dict) -> torch.Tensor:
        """``mean_b[total_b + delta * reg_b]`` (``reg`` ``None``: no gauge term)."""
        if reg is not None:
            total = total + self.delta * reg
            parts["reg"] = float(reg.detach().mean())
        return total.mean()

    def _data_term(self, values: torch.Tensor, keep: torch.Tensor, parts: dict, name: str) -> torch.Tensor:
        """``lambda * sum_{data b} values_b / B``: the reward term, ``values`` on the data sets
        (``keep``) only."""
        parts[name] = float(values.detach().mean())
        return self.lambda_cd * values.sum() / keep.numel()

    def _gauge(self, net, steps, encodings, batch, energy_final, bf16) -> torch.Tensor | None:
        """The gauge term per set ``(B,)`` (``None`` for ``gauge="none"``); ``energy_final`` is
        ``E[c_{1:N}]`` of the sets' partitions, ``steps`` their teacher-forced energies."""
        if self.gauge == "none":
            return None
        if self.gauge == "final":
            return losses.energy_regularizer(energy_final)
        if self.gauge == "normalizer":
            return losses.normalizer_gauge(steps)
        return first_state_energy(net, encodings, batch.orders, batch.mask, bf16=bf16).square()

    def _exploration_labels(self, net, batch, encodings, generator) -> torch.Tensor:
        explore = ~batch.is_data
        if self.explore != "policy" or not bool(explore.any()):
            return batch.labels
        mask = batch.mask[explore]
        width = int(mask.sum(1).max())
        sub = policy.Encodings(encodings.h[explore][:, :width].detach(), encodings.u[explore][:, :width].detach())
        with torch.no_grad():
            sample, _ = decoding.sample(net, batch.x[explore][:, :width], 1, mask=mask[:, :width],
                                        orders=batch.orders[explore][:, :width], generator=generator, encodings=sub)
        labels = batch.labels.clone()
        rows = labels[explore]
        rows[:, :width] = torch.where(mask[:, :width], sample[:, 0], rows[:, :width])
        labels[explore] = rows
        return labels

    def _contrastive_sample(self, net, batch, encodings, generator, background) -> tuple:
        """The CD term's policy sample of the data sets along their orders (Eq. 27 in [1]),
        started as a :class:`~gfncp_pyro.background.Deferred`: ``(x, mask, encodings, drawn)``
        of the data sets, cut to their longest set."""
        keep = batch.is_data
        x, mask = batch.x[keep], batch.mask[keep]
        width = int(mask.sum(1).max())
        x, mask = x[:, :width], mask[:, :width]
        sub = policy.Encodings(encodings.h[keep][:, :width], encodings.u[keep][:, :width])
        detached = policy.Encodings(sub.h.detach(), sub.u.detach())
        drawn = Deferred(decoding.sample, net, x, 1, mask=mask, orders=batch.orders[keep][:, :width],
                         generator=generator, encodings=detached, background=background)
        return x, mask, sub, drawn

    def loss(self, net: EnergyNet, batch: "SetBatch", generator: torch.Generator, *,
             step: int | None = None, bf16: bool = False,
             reward: Literal["cd", "nll"] | None = None,
             background: bool | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """The objective on one batch, averaged over sets, and its parts.

        ``mean_b[w * balance_b + delta * gauge_b] + lambda * sum_{data b} reward_b / B`` with
        ``w = balance_weight(step)``. ``reward`` overrides ``self.reward`` (validation scores
        with ``"nll"``: the CD surrogate's value is not a loss, only its gradient is).
        ``background``: draw the policy samples (CD, variance balance) in a second thread
        beside the teacher-forced passes (:mod:`gfncp_pyro.background`; same values);
        ``None``: when the CPU has a core to spare (:func:`~gfncp_pyro.background.spare_core`).
        """
        reward = reward or self.reward
        if background is None:
            background = spare_core(batch.x.device)
        if self.balance == "variance":
            return self._variance_loss(net, batch, generator, step, bf16, background)
        subset = _step_subset(self.mc_steps, batch, generator)
        encodings = policy.encode_points(net, batch.x, bf16=bf16)
        labels = self._exploration_labels(net, batch, encodings, generator)
        drawn = None
        if reward == "cd" and self.lambda_cd > 0 and bool(batch.is_data.any()):
            drawn = self._contrastive_sample(net, batch, encodings, generator, background)  # beside the passes
        kwargs = {"step_subset": subset, "parent_candidates": self.flow == "paper"} if subset is not None else {}
        steps = policy.teacher_force(net, encodings, labels, batch.mask, batch.orders,
                                     bf16=bf16, **kwargs)
        scale = self.energy_gradient_scale(step)
        offsets = None
        if self.flow == "offset":  # the shared encoder u reaches the offsets with the same scale
            u = encodings.u if scale >= 1.0 else scale * encodings.u + (1.0 - scale) * encodings.u.detach()
            offsets = flows.state_log_flow_offsets(net, policy.Encodings(encodings.h, u), batch.mask, batch.orders,
                                                    bf16=bf16)
        if self.flow == "state":
            features = steps.state_features
            if scale < 1.0:
                features = scale * features + (1.0 - scale) * features.detach()
            offsets = flows.parent_log_flow_offsets(net, steps._replace(state_features=features), bf16=bf16)
        balance_steps = steps
        if scale < 1.0:  # same values, a fraction of the gradient into the energies
            mixed = scale * steps.energies + (1.0 - scale) * steps.energies.detach()
            balance_steps = steps._replace(energies=torch.where(steps.candidate_mask, mixed, steps.energies.detach()))
        if self.balance == "trajectory":
            mc = losses.trajectory_balance(balance_steps, self.flow, offsets)
        else:
            mc = losses.marginal_consistency(balance_steps, self.flow, offsets)
        weight = self.balance_weight(step)
        parts = {"mc": float(mc.detach().mean()), "mc_weight": weight}
        if self.mc_calibrate:
            parts["mc_energy_gradient"] = scale
        total = weight * mc
        energy = None
        if self.gauge == "final" or (reward == "cd" and self.lambda_cd > 0):
            energy = policy.partition_energy(net, encodings, labels, batch.mask, bf16=bf16)
        loss = self._with_gauge(total, self._gauge(net, steps, encodings, batch, energy, bf16), parts)
        keep = batch.is_data
        if self.lambda_cd > 0 and bool(keep.any()):
            if reward == "nll":
                loss = loss + self._data_term(losses.ncp_nll(steps)[keep], keep, parts, "nll")
            else:
                x, mask, sub, sample = drawn
                sample = sample.result()[0]
                energy_sample = policy.partition_energy(net, sub, sample[:, 0], mask, bf16=bf16)
                cd = losses.contrastive_divergence(energy[keep], energy_sample)
                loss = loss + self._data_term(cd, keep, parts, "cd")
        return loss, parts


OBJECTIVES: dict[str, type] = {objective.name: objective for objective in (GFNCPObjective, NCPObjective)}
"""The objectives by name (the ``name`` key of their saved dicts, ``--objective``)."""


def objective_class(name: str) -> type:
    """The objective class called ``name``; ``ValueError`` naming the objectives."""
    if name not in OBJECTIVES:
        raise ValueError(f"objective must be one of {tuple(OBJECTIVES)}, got {name!r}")
    return OBJECTIVES[name]


def objective_from_dict(data: dict) -> GFNCPObjective | NCPObjective:
    """Inverse of ``to_dict``: ``{"name": "gfncp" | "ncp", ...fields}``."""
    if not isinstance(data, dict) or "name" not in data:
        raise ValueError(f"a saved objective is a dict with a 'name' key, got {data!r}")
    fields = dict(data)
    return objective_class(fields.pop("name")).from_dict(fields)
