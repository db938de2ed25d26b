"""``ProjUNN``: turn any ``torch.optim`` optimizer into a projUNN optimizer.

The base optimizer computes its update Δ as usual (momentum, Adam moments and
RMSprop averages all see the raw gradients). For parameters in groups marked
``unitary=True`` the wrapper sketches Δ ≈ A Bᴴ to rank k and replaces
``W + Δ`` by ``transport(W, A, B)`` (projUNN-T) or ``project(W, A, B)``
(projUNN-D). Other groups are left to the base optimizer.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import torch

from unitary_lowrank._adapters import (
    DEFAULT_REORTHONORMALIZE_EVERY,
    SPLIT_SKETCHES,
    Options,
    check_rank,
    initial_basis,
    know_weight,
    newton_schulz_correction,
    rank_of,
    step,
    unitarity_problem,
    unitarity_tolerance,
)
from unitary_lowrank._split import ONE, Split
from unitary_lowrank.sharded import probe_weight

from .distributed import is_sharded, split_of_parameter

#: Options a group of unitary weights may set for itself
GROUP_OPTIONS = tuple(field.name for field in dataclasses.fields(Options))
#: The options a saved state depends on: loading it under others is refused
_STATE_OPTIONS = ("rank", "method", "retraction", "sketch", "error_feedback")

__all__ = ["DEFAULT_REORTHONORMALIZE_EVERY", "ProjUNN", "unitary_groups"]

_SUPPORTED = (torch.float32, torch.float64, torch.complex64, torch.complex128)


class ProjUNN(torch.optim.Optimizer):
    """Wrap an already-built optimizer so that its ``unitary=True`` groups stay unitary.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        The base optimizer (SGD, Adam, AdamW, RMSprop, Adagrad, ...). Mark the
        unitary parameters by putting them in a param group with
        ``"unitary": True`` (:func:`unitary_groups` builds the groups from a
        module); such a group may also set its own ``rank``, ``method``, ``retraction``,
        ``sketch``, ``error_feedback``, ``reorthonormalize_every`` and ``seed``. Parameters are
        (..., n, p) matrices: square ones stay unitary (orthogonal), tall
        ones (p < n) keep orthonormal columns, wide ones (p > n) orthonormal
        rows — such a weight is stepped through its adjoint.
    rank : int or "auto", default "auto"
        k, the rank of the sketch of each update. ``"auto"``: chosen from the
        weight's shape, ``min(32, max(1, min(n, p) // 16))`` (1 up to 31×31,
        16 at 256×256, 32 from 512×512 on): the largest rank at which a step
        still costs about what a rank-1 step does (docs: *Which step, which rank?*).
    method : {"transport", "project", "dense"}, default "transport"
        projUNN-T (``W exp(skew(Wᴴ A Bᴴ))``), projUNN-D (closest unitary to
        ``W + A Bᴴ``), or ``"dense"``: the exact full-rank Riemannian step
        ``exp(skew(Δ Wᴴ)) W`` (for square ``W``: ``W exp(skew(Wᴴ Δ))``) with
        a dense ``torch.linalg.matrix_exp`` (O(n³); the baseline projUNN
        approximates; it takes no rank, sketch or error feedback).
        ``"cayley"`` is the old spelling of ``method="transport",
        retraction="cayley"`` (deprecated).
    retraction : {"exp", "cayley"}, default "exp"
        How projUNN-T follows the tangent: the exponential map, or the Cayley
        transform (same cost). Only with ``method="transport"``.
    sketch : {"randomized", "column", "svd", "subspace"}, default "randomized"
        How the update is reduced to rank k: a stateless sketch of
        :func:`unitary_lowrank.sketch`, or ``"subspace"``, one warm-started
        subspace iteration per step from the last step's basis (two passes over
        Δ with k columns; the basis, (..., min(n, p), k) per weight, is kept
        with the wrapper's state and saved by :meth:`state_dict`).
    error_feedback : bool, default False
        Keep what each low-rank step leaves out of the update in a buffer (one
        more weight-sized tensor per parameter) and add it to the next update
        before sketching, as Dion does.
    reorthonormalize_every : int or None, default 100
        Take one Newton–Schulz step (O(N³)) every this many steps against
        rounding drift; ``None`` or 0 never does.
    seed : int, default 0
        The sketch's draws are keyed by ``(seed, parameter index, step)``, an
        int64 tensor per parameter on its device advanced in place (counter-based
        draws: no host work, compilable, graph-safe), never by the global RNG:
        data-parallel replicas draw the same sketch.
    check_unitary : bool, default True
        At construction, raise if a marked weight is not unitary.
    check_every : int or None, default 100
        How often (in steps) to look at the device-side record of skipped
        updates and raise :class:`FloatingPointError` if there was one (see
        *Non-finite updates*). ``None`` or 0: only when :meth:`status` is
        called. Not done inside a ``torch.compile``-d step: call
        :meth:`status` between compiled steps.

    Notes
    -----
    The update is taken from the base optimizer by letting it step a zero
    tensor in the weight's place, so Δ is exactly what it would have added,
    with no cancellation. This is valid for optimizers whose update depends on
    the gradient and their own state only — all the standard ones with
    ``weight_decay=0``; weight decay on a unitary group is refused (it pulls
    ``W`` off the manifold), and so is ``LBFGS``. A ``closure`` is evaluated
    once, before the step.

    **Non-finite updates.** An update whose sketch holds NaN or Inf (a NaN
    loss, an overflowing gradient) is not applied: the unitary weight keeps
    its value, as ``torch.amp.GradScaler`` skips such steps, and a per-parameter
    counter on the weight's device records it. Nothing is read back to the
    host during the step (no GPU synchronization, graph-capturable); the
    counters are read every ``check_every`` steps, or by :meth:`status`, which
    raise naming the parameters.

    Complex parameters follow PyTorch's convention: ``.grad`` holds the
    conjugate Wirtinger derivative and the base optimizer's Δ is a descent
    direction; the tangent projection keeps it one.

    **Sharded parameters.** A ``DTensor`` parameter of FSDP2 (``fully_shard``,
    rows sharded on one mesh dimension; build the wrapper after sharding) is
    stepped on its local rows with O(N k) communication, never gathered
    (:mod:`unitary_lowrank.sharded`); a batch of matrices sharded on its batch
    axis is stepped locally. See the docs page *Training at scale*.

    Examples
    --------
    >>> import torch
    >>> from unitary_lowrank.backends.torch import ProjUNN, haar_
    >>> W = torch.nn.Parameter(haar_(torch.empty(8, 8, dtype=torch.float64)))
    >>> base = torch.optim.Adam([{"params": [W], "unitary": True}], lr=1e-2)
    >>> opt = ProjUNN(base, rank=1)
    >>> loss = (W - torch.eye(8, dtype=torch.float64)).pow(2).sum()
    >>> loss.backward(); opt.step()
    >>> bool(torch.dist(W.T @ W, torch.eye(8, dtype=torch.float64)) < 1e-13)
    True
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        rank: int | str = "auto",
        method: str = "transport",
        retraction: str = "exp",
        sketch: str = "randomized",
        error_feedback: bool = False,
        reorthonormalize_every: int | None = DEFAULT_REORTHONORMALIZE_EVERY,
        seed: int = 0,
        check_unitary: bool = True,
        check_every: int | None = 100,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"ProjUNN wraps a torch.optim.Optimizer; got {type(optimizer).__name__}")
        if isinstance(optimizer, torch.optim.LBFGS):
            raise TypeError("ProjUNN cannot wrap LBFGS: its line search re-evaluates the loss off the manifold")
        if check_every is not None and (not isinstance(check_every, int) or check_every < 0):
            raise ValueError(f"ProjUNN: check_every must be an int ≥ 0 or None; got {check_every!r}")
        self.optimizer = optimizer
        self.options = Options.checked(
            "ProjUNN", rank=rank, method=method, retraction=retraction, sketch=sketch, error_feedback=error_feedback,
            reorthonormalize_every=reorthonormalize_every, seed=seed,
        )  # fmt: skip
        self.check_unitary, self.check_every = check_unitary, check_every
        self._checked: dict[tuple[tuple[str, Any], ...], Options] = {(): self.options}  # a group's own → its options
        self._calls = 0
        self._warned_no_gradient = False
        # Share, not copy, the base optimizer's groups and state, so that LR
        # schedulers attached to either object see the same learning rates.
        self.defaults = optimizer.defaults
        self.param_groups = optimizer.param_groups
        self.state = optimizer.state
        for hooks in ("step_pre", "step_post", "state_dict_pre", "state_dict_post", "load_state_dict_pre",
                      "load_state_dict_post"):  # fmt: skip
            setattr(self, f"_optimizer_{hooks}_hooks", OrderedDict())
        self._warned_capturable_if_run_uncaptured = True
        self._patch_step_function()
        self.projunn_state: dict[str, Any] = {"steps": {}}
        self._buffers: dict[int, torch.Tensor] = {}
        self._keys: dict[int, torch.Tensor] = {}
        self._bases: dict[int, torch.Tensor] = {}  # per parameter: the subspace sketch's basis
        self._errors: dict[int, torch.Tensor] = {}  # per parameter: the error-feedback buffer
        self._splits: dict[int, Split] = {}  # id(parameter) → how a DTensor parameter (FSDP2) is split
        self._skipped: dict[int, torch.Tensor] = {}  # per parameter: updates not applied (non-finite), on its device
        for index, group in enumerate(self.param_groups):
            self._validate_group(index, group)
        self._make_state()
        if not any(group.get("unitary", False) for group in self.param_groups):
            warnings.warn(
                "ProjUNN: no param group is marked unitary=True, so this optimizer acts as the plain base optimizer. "
                "Mark the unitary weights, e.g. torch.optim.Adam(unitary_groups(model, [model.rnn.weight_hh]), ...) "
                "with unitary_lowrank.backends.torch.unitary_groups",
                UserWarning,
                stacklevel=2,
            )

    @property
    def projunn_defaults(self) -> dict[str, Any]:
        """The wrapper's options as a dict (a group's own override them): rank, method, sketch, ..."""
        return dataclasses.asdict(self.options)

    # -- validation ---------------------------------------------------------
    def _options(self, group: dict[str, Any], where: str = "ProjUNN") -> Options:
        """The group's effective options: its own over the wrapper's.

        Checked once per distinct setting (when the group is added, or when the user changes it), then looked
        up: a step, eager or traced by ``torch.compile``, only reads the group's values.
        """
        own = tuple((key, group[key]) for key in GROUP_OPTIONS if key in group)
        options = self._checked.get(own)
        if options is None:
            options = self._checked[own] = Options.checked(where, **{**self.projunn_defaults, **dict(own)})
        return options

    def _name(self, group_index: int, param_index: int) -> str:
        group = self.param_groups[group_index]
        where = f"param_groups[{group_index}]['params'][{param_index}]"
        names = group.get("param_names")
        if names is not None and param_index < len(names):
            return f"'{names[param_index]}' ({where})"
        return where

    def _validate_group(self, index: int, group: dict[str, Any]) -> None:
        if not group.get("unitary", False):
            return
        where = f"ProjUNN: param_groups[{index}]"
        options = self._options(group, where)
        decay = group.get("weight_decay", 0)
        if decay:
            raise ValueError(
                f"{where} is marked unitary but has weight_decay={decay}: decay pulls W toward 0, off the "
                "manifold. Set weight_decay=0 for this group (AdamW defaults to 0.01: pass it explicitly)."
            )
        for j, p in enumerate(group["params"]):
            name = self._name(index, j)
            if p.ndim < 2:
                raise ValueError(
                    f"ProjUNN: parameter {name} has shape {tuple(p.shape)}; unitary parameters must be matrices, "
                    "shape (..., n, p) (square, or with orthonormal rows or columns). Move it to a group without "
                    "unitary=True."
                )
            if p.dtype not in _SUPPORTED:
                raise TypeError(
                    f"ProjUNN: parameter {name} is {p.dtype}; unitary parameters must be float32, float64, "
                    "complex64 or complex128 (half precision cannot hold a unitary matrix to useful accuracy). "
                    "Keep the weight in float32 and autocast only the activations."
                )
            check_rank("ProjUNN", f"parameter {name}", tuple(p.shape), options.rank)
            if is_sharded(p):
                problem = self._validate_sharded(p, name, options)
            else:
                know_weight(p)
                problem = unitarity_problem(p.detach(), torch.finfo(p.dtype).eps) if self.check_unitary else None
            if problem is not None:
                raise ValueError(
                    f"ProjUNN: parameter {name} {problem}. "
                    "Initialize it with unitary_lowrank.backends.torch.haar_ (or henaff_, cayley_), or pull it "
                    "back with `with torch.no_grad(): p.copy_(unitary_lowrank.reorthonormalize(p))`."
                )

    def _validate_sharded(self, p: Any, name: str, options: Options) -> str | None:
        """Check a DTensor parameter's layout and options; why its weight cannot be stepped, or ``None``."""
        split = split_of_parameter(p, name)
        if options.method == "dense":
            raise ValueError(
                f"ProjUNN: parameter {name} is sharded (a DTensor); method='dense' needs the whole weight on every "
                "process (an O(N³) step on a gathered matrix). Use 'transport', 'project' or 'cayley'."
            )
        if split.axis != "batch" and options.sketch not in SPLIT_SKETCHES:
            raise ValueError(
                f"ProjUNN: parameter {name} is sharded by rows (a DTensor); its update is sketched with "
                f"{SPLIT_SKETCHES}, not {options.sketch!r}."
            )
        self._splits[id(p)] = split
        local = p.to_local().detach()
        know_weight(local)
        if not self.check_unitary:
            return None
        eps = torch.finfo(p.dtype).eps
        if split.axis == "batch":  # whole matrices on every process: the one-process check, agreed on
            problem = unitarity_problem(local, eps) if local.numel() else None
            flags = split.comm.all_reduce(torch.tensor([float(problem is not None)], device=local.device))
            return problem or ("is not unitary on another process" if float(flags[0]) else None)
        worst = float(probe_weight(local, split).max())
        tolerance = unitarity_tolerance(eps)
        return None if worst <= tolerance else f"is not unitary (probe ‖WᴴW z − z‖/‖z‖ = {worst:.3g} > {tolerance:.2g})"

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the base optimizer (validated like the others)."""
        self.optimizer.add_param_group(param_group)
        self._validate_group(len(self.param_groups) - 1, self.param_groups[-1])
        self._make_state()

    def _make_state(self) -> None:
        """Step counts, subspace bases and error buffers of the unitary parameters that have none yet.

        Made when the wrapper is built (not at the first step), so that a checkpoint template
        (``torch.distributed.checkpoint`` loads into existing entries) holds every entry. The first
        basis is the keyed draw of step 1: the same on every replica.
        """
        for index, options, p in self._unitary_params(with_grad=False):
            self.projunn_state["steps"].setdefault(index, 0)
            self._state_of(index, p, options, advance=False)

    def _unitary_params(self, with_grad: bool = True) -> Iterator[tuple[int, Options, Any]]:
        """(global index, options, parameter) for marked parameters (with a gradient, by default)."""
        index = 0
        for group in self.param_groups:
            for p in group["params"]:
                if group.get("unitary", False) and (p.grad is not None or not with_grad):
                    yield index, self._options(group), p
                index += 1

    # -- the step -----------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step of the base optimizer, with unitary groups moved along the manifold.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss; called once, with
            gradients enabled, before the step.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        marked = list(self._unitary_params())
        self._warn_if_nothing_moves(marked)
        weights, deltas = self._base_updates(marked)
        for index, options, p in marked:
            key, skipped, basis, error = self._state_of(index, p, options)
            split = self._splits.get(id(p), ONE)
            result = step(
                _local(weights[index]), _local(deltas[index]), options, key=key, basis=basis, error=error,
                out=_local(p), skip_nonfinite=True, split=split,
            )  # fmt: skip
            skipped.add_(~result.finite)  # device-side records only: a non-finite update was replaced by zero
            _keep(basis, result.basis)
            _keep(error, result.error)
            every = options.reorthonormalize_every
            if every and self.projunn_state["steps"][index] % every == 0:
                _reorthonormalize(p, split)
        self._calls += 1
        self._look_at_skipped()
        return loss

    def _look_at_skipped(self) -> None:
        """Every ``check_every`` steps, :meth:`status` (a host read): not inside a compiled or captured step."""
        if not self.check_every or self._calls % self.check_every:
            return
        capturing = torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()
        if not (torch.compiler.is_compiling() or capturing):
            self.status()

    def _warn_if_nothing_moves(self, marked: list[tuple[int, Options, Any]]) -> None:
        if not marked and not self._warned_no_gradient and any(g.get("unitary", False) for g in self.param_groups):
            self._warned_no_gradient = True
            warnings.warn(
                "ProjUNN.step: no unitary parameter has a gradient, so none moved. If the model was sharded "
                "(fully_shard) or moved after this optimizer was built, its parameters were replaced: build the "
                "optimizer after sharding.",
                UserWarning,
                stacklevel=4,
            )

    def _base_updates(self, marked: list[tuple[int, Options, Any]]) -> tuple[dict[int, Any], dict[int, Any]]:
        """Step the base optimizer; the unitary parameters' weights W and updates Δ, by index.

        The base optimizer steps a zero tensor in W's place: what it leaves there is exactly its update Δ,
        with no cancellation. Eager: p.data is swapped for a zeroed buffer (no copy), and p holds W again
        afterwards. Under torch.compile, which may mutate a parameter but not swap its storage, and for a
        sharded (DTensor) parameter, whose storage FSDP2 owns, W is copied into the buffer and p itself is
        zeroed and receives Δ (the step then writes its result over Δ).
        """
        compiling = torch.compiler.is_compiling()
        copied = {index for index, _, p in marked if compiling or id(p) in self._splits}
        weights = {}
        for index, _, p in marked:
            if p.grad.is_sparse:
                raise TypeError(f"ProjUNN: sparse gradients are not supported on unitary parameter #{index}")
            buffer = self._buffers.get(index)
            if buffer is None or buffer.shape != p.shape or buffer.dtype != p.dtype or buffer.device != p.device:
                buffer = self._buffers[index] = torch.empty_like(p.data)
            if index in copied:
                weights[index] = buffer.copy_(p)
                p.zero_()
            else:
                weights[index], p.data = p.data, buffer.zero_()
        try:
            if compiling:
                # the base optimizer's own step, without the wrappers whose deliberate graph breaks
                # (grad mode, profiling hooks) would split a compiled ProjUNN step: we run under no_grad already
                _undecorated(type(self.optimizer).step)(self.optimizer)
            else:
                self.optimizer.step()
        except BaseException:
            for index, _, p in marked:
                if index in copied:
                    p.copy_(weights[index])
                else:
                    p.data = weights[index]
            raise
        deltas = {}
        for index, _, p in marked:
            if index in copied:
                deltas[index] = p
            else:
                deltas[index], p.data = p.data, weights[index]
                weights[index] = p
        return weights, deltas

    def _state_of(self, index: int, p: Any, options: Options, advance: bool = True) -> tuple[Any, Any, Any, Any]:
        """The parameter's step state on its device: sketch key, skipped-update count, basis, error buffer.

        ``advance``: count a step, and advance the key ``[seed, index, step]`` in place (graph-safe; made
        again from the step count if the parameter moved). Made where missing: the first basis is the
        keyed draw of step 1 (the same on every replica), the error buffer zero.
        """
        steps = self.projunn_state["steps"]
        count = steps[index] = steps.get(index, 0) + advance
        skipped = _on_device(self._skipped, index, p, 0)
        key = _on_device(self._keys, index, p, [options.seed % 2**63, index, count - advance])
        if advance:
            key[2] += 1
        split = self._splits.get(id(p), ONE)
        basis = error = None
        if options.sketch == "subspace" and options.method != "dense":
            basis = self._bases.get(index)
            if basis is None:
                first = torch.tensor([options.seed % 2**63, index, count + (not advance)], device=p.device)
                basis = self._bases[index] = initial_basis(_local(p).detach(), options.rank, first, split)
            elif basis.device != p.device:
                basis = self._bases[index] = basis.to(p.device)
        if options.error_feedback:
            error = self._errors.get(index)
            if error is None or error.device != p.device:
                error = torch.zeros_like(_local(p).detach()) if error is None else error.to(p.device)
                self._errors[index] = error
        return key, skipped, basis, error

    def status(self) -> None:
        """Raise ``FloatingPointError`` if an update was skipped as non-finite since the last call.

        Reads the per-parameter counters kept on the device (one synchronization)
        and resets them. Called every ``check_every`` steps by :meth:`step`
        (eager); call it yourself between ``torch.compile``-d steps.
        """
        if not self._skipped:
            return
        indices = list(self._skipped)
        counts = torch.stack([self._skipped[i].to("cpu", non_blocking=False) for i in indices]).tolist()
        bad = [(i, c) for i, c in zip(indices, counts, strict=True) if c]
        if not bad:
            return
        for i, _ in bad:
            self._skipped[i].zero_()
        located = {}
        index = 0
        for g, group in enumerate(self.param_groups):
            for j, _ in enumerate(group["params"]):
                located[index] = self._name(g, j)
                index += 1
        listed = ", ".join(f"{located.get(i, f'#{i}')} ({c} step{'s' * (c != 1)})" for i, c in bad)
        raise FloatingPointError(
            f"ProjUNN: non-finite updates (NaN or Inf in the base optimizer's step) were skipped for {listed}; "
            "the unitary weights kept their values. Look for a NaN loss or an overflowing gradient; "
            "the base optimizer's state (e.g. Adam's moments) may hold NaN now."
        )

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients (delegated to the base optimizer)."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    # -- checkpoints --------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state dict, plus the wrapper's step counts, options, bases and error buffers.

        For a sharded (DTensor) parameter, what each process holds for itself alone (its error buffer, and
        its part of the basis in the column and batch layouts) is keyed ``"INDEX.rankR"``: a
        ``torch.distributed.checkpoint`` saves every process's part and gives it back to the same rank.
        """
        params = {index: p for index, _, p in self._unitary_params(with_grad=False)}

        def keyed(store: dict[int, torch.Tensor], whole_basis: bool) -> dict[Any, torch.Tensor]:
            out: dict[Any, torch.Tensor] = {}
            for index, tensor in store.items():
                split = self._splits.get(id(params[index]), ONE) if index in params else ONE
                local = split is not ONE and not (whole_basis and _basis_is_whole(params[index], split))
                out[f"{index}.rank{split.comm.index}" if local else index] = tensor
            return out

        return {
            "base": self.optimizer.state_dict(),
            "projunn": {
                "steps": dict(self.projunn_state["steps"]),
                "defaults": self.projunn_defaults,
                "bases": keyed(self._bases, True),
                "errors": keyed(self._errors, False),
            },
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (base state, step counts, options, bases, error buffers).

        Everything is checked before anything is loaded: a state saved with other options (rank, method,
        retraction, sketch, error feedback, per group too), for other parameters (count, shapes, dtypes),
        or damaged, raises ``ValueError`` naming the mismatch and leaves this optimizer as it was.
        """
        problem = self._state_problem(state_dict)
        if problem is not None:
            raise ValueError(f"ProjUNN.load_state_dict: {problem}; nothing was loaded")
        saved = state_dict["projunn"]
        options = Options.checked("ProjUNN.load_state_dict", **{**self.projunn_defaults, **saved["defaults"]})
        self.optimizer.load_state_dict(state_dict["base"])
        self.param_groups = self.optimizer.param_groups
        self.state = self.optimizer.state
        self.options = options  # options added since the save: this wrapper's
        self._checked = {(): options}
        self.projunn_state = {"steps": {int(k): int(v) for k, v in saved["steps"].items()}}
        self._keys = {}  # rebuilt from the restored step counts
        self._bases = self._own_entries(saved.get("bases", {}))
        self._errors = self._own_entries(saved.get("errors", {}))

    def _state_problem(self, state_dict: Any) -> str | None:
        """What makes ``state_dict`` unfit for this optimizer, or ``None``; reads it, changes nothing."""
        if not isinstance(state_dict, dict) or not {"base", "projunn"} <= set(state_dict):
            return (
                "expected the dict that ProjUNN.state_dict() returns (keys 'base' and 'projunn'); to load a plain "
                "optimizer's state, use .optimizer.load_state_dict"
            )
        base, saved = state_dict["base"], state_dict["projunn"]
        if not isinstance(base, dict) or not {"state", "param_groups"} <= set(base):
            return "its 'base' entry is not an optimizer state dict"
        if not isinstance(saved, dict) or not {"steps", "defaults"} <= set(saved):
            return "its 'projunn' entry lacks the step counts or the options"
        groups = base["param_groups"]
        if len(groups) != len(self.param_groups):
            return f"it holds {len(groups)} param groups, this optimizer {len(self.param_groups)}"
        for g, (old, new) in enumerate(zip(groups, self.param_groups, strict=True)):
            if len(old["params"]) != len(new["params"]):
                return f"param_groups[{g}] holds {len(old['params'])} parameters there, {len(new['params'])} here"
            if bool(old.get("unitary", False)) != bool(new.get("unitary", False)):
                return f"param_groups[{g}] is {'' if old.get('unitary') else 'not '}marked unitary there"
        try:
            defaults = Options.checked("the saved options", **{**self.projunn_defaults, **saved["defaults"]})
        except (TypeError, ValueError) as err:
            return str(err)
        params = [p for group in self.param_groups for p in group["params"]]
        for g, (old, new) in enumerate(zip(groups, self.param_groups, strict=True)):
            if not new.get("unitary", False):
                continue
            there = {key: old.get(key, getattr(defaults, key)) for key in _STATE_OPTIONS}
            here = {key: getattr(self._options(new), key) for key in _STATE_OPTIONS}
            differ = [
                f"{key}={there[key]!r} there, {here[key]!r} here" for key in _STATE_OPTIONS if there[key] != here[key]
            ]
            if differ:
                return f"param_groups[{g}] was saved with other options: {'; '.join(differ)}"
        for index, entry in base["state"].items():
            p = params[int(index)] if 0 <= int(index) < len(params) else None
            if p is None:
                return f"it holds optimizer state for parameter #{index}, which this optimizer does not have"
            for name, value in entry.items():
                if isinstance(value, torch.Tensor) and value.ndim and tuple(value.shape) != tuple(p.shape):
                    shapes = f"{tuple(value.shape)}, the parameter {tuple(p.shape)}"
                    return f"the state {name!r} of parameter #{index} has shape {shapes}"
        unitary = {index: (options, p) for index, options, p in self._unitary_params(with_grad=False)}
        for kind, store in (("basis", saved.get("bases", {})), ("error buffer", saved.get("errors", {}))):
            for key, tensor in store.items():
                index = int(str(key).partition(".rank")[0])
                if index not in unitary:
                    return f"it holds a {kind} for parameter #{index}, which is not a unitary parameter here"
                options, p = unitary[index]
                shape = _basis_shape(p, options.rank, self._splits.get(id(p), ONE)) if kind == "basis" else None
                shape = shape or tuple(_local(p).shape)
                if tuple(tensor.shape) != shape or tensor.dtype != p.dtype:
                    return (
                        f"the {kind} of parameter #{index} has shape {tuple(tensor.shape)} and dtype {tensor.dtype}; "
                        f"expected {shape} and {p.dtype}"
                    )
        return None

    def _own_entries(self, store: dict[Any, torch.Tensor]) -> dict[int, torch.Tensor]:
        """Entries by parameter index: plain ones, and this process's ``"INDEX.rankR"`` ones (see ``state_dict``)."""
        params = {index: p for index, _, p in self._unitary_params(with_grad=False)}
        own = {}
        for key, tensor in store.items():
            index, _, owner = str(key).partition(".rank")
            split = self._splits.get(id(params.get(int(index))), ONE)
            if not owner or (split is not ONE and int(owner) == split.comm.index):
                own[int(index)] = tensor
        return own

    def __repr__(self) -> str:
        """Each unitary group's effective settings (its own over the wrapper's defaults), then the base optimizer."""
        lines = ["ProjUNN("]
        for index, group in enumerate(self.param_groups):
            if group.get("unitary", False):
                count = len(group["params"])
                options = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(self._options(group)).items())
                lines.append(f"  param_groups[{index}], unitary, {count} parameter{'s' * (count != 1)}: {options}")
        if len(lines) == 1:
            lines.append("  no unitary group: acts as the base optimizer")
        lines.append(f"  base: {self.optimizer!r}")
        return "\n".join(lines) + "\n)"


def _local(x: Any) -> Any:
    """This process's block of a sharded (DTensor) tensor; any other tensor itself."""
    return x.to_local() if is_sharded(x) else x


def _keep(state: torch.Tensor | None, new: Any) -> None:
    """Write the step's new basis or error buffer over the old one (kept in place: graph-safe)."""
    if state is not None:
        state.copy_(new)


def _basis_shape(p: Any, rank: int | str, split: Split) -> tuple[int, ...]:
    """The shape of this process's subspace basis of ``p``: (..., min(n, p), k), or its rows of it where split."""
    local = _local(p)
    n, q = split.shape(local)
    rows = split.sizes[split.comm.index] if split.axis == "n" and q > n else min(n, q)  # a wide W's split rows
    return (*local.shape[:-2], rows, rank_of(rank, (n, q)))


def _basis_is_whole(p: Any, split: Split) -> bool:
    """Every process holds the whole subspace basis of ``p``: its tall view's rows, not its columns, are split."""
    n, p_ = split.shape(_local(p))
    return split.tall(n, p_).axis == "n"


def _reorthonormalize(p: Any, split: Split) -> None:
    """The periodic drift correction: one Newton–Schulz step, in place; O(N k) for a weight split by rows.

    A batch split over processes: one Newton–Schulz step on each process's own matrices (no communication).
    Rows (or a wide weight's rows): the O(n p) probe of :func:`unitary_lowrank.sharded.probe_weight` (one
    all-reduce of 2 max(n, p) numbers); only when it exceeds 100 ε does a Newton–Schulz step run, on the
    gathered weight (an all-gather of W: the one O(N²) collective, and a rare one — rounding drift reaches
    100 ε after thousands of steps).
    """
    local = _local(p)
    if split.axis in (None, "batch"):
        if local.numel():
            local.sub_(newton_schulz_correction(local))
        return
    drift = float(probe_weight(local, split).max())
    if not drift > 100 * torch.finfo(p.dtype).eps:
        return
    full = p.full_tensor()
    full = full - newton_schulz_correction(full)
    start = sum(split.sizes[: split.comm.index])
    local.copy_(full[start : start + local.shape[0]])


def _on_device(store: dict[int, torch.Tensor], index: int, p: torch.Tensor, initial: Any) -> torch.Tensor:
    """``store[index]``, an int64 tensor on ``p``'s device; made from ``initial`` if missing or elsewhere."""
    tensor = store.get(index)
    if tensor is None or tensor.device != p.device:
        tensor = store[index] = torch.tensor(initial, dtype=torch.int64, device=p.device)
    return tensor


def _undecorated(function: Callable[..., Any]) -> Callable[..., Any]:
    """The function under its ``functools.wraps`` decorators (torch.optim's grad-mode and profiling wrappers)."""
    while hasattr(function, "__wrapped__"):
        function = function.__wrapped__
    return function


def unitary_groups(
    model: torch.nn.Module,
    unitary: Any,
    **options: Any,
) -> list[dict[str, Any]]:
    """Param groups for any ``torch.optim`` optimizer: the unitary weights in one group, the rest in another.

    Parameters
    ----------
    model : torch.nn.Module
        The model whose ``named_parameters()`` are split.
    unitary : iterable of parameters or of names, or a callable ``(name, parameter) -> bool``
        Which parameters must stay unitary (orthonormal rows or columns for
        rectangular ones), e.g. ``[model.rnn.weight_hh]``, ``["rnn.weight_hh"]``
        or ``lambda name, p: name.endswith("weight_hh")``.
    **options
        Per-group settings of the unitary group: ``rank``, ``method``, ``retraction``,
        ``sketch``, ``error_feedback``, ``reorthonormalize_every``, ``seed`` (see :class:`ProjUNN`),
        or the base optimizer's own (``lr``, ...).

    Returns
    -------
    list of dict
        ``[{"params": others, "param_names": ...}, {"params": unitary, "param_names": ...,
        "unitary": True, **options}]``; a group with no parameter is left out.

    Raises
    ------
    ValueError
        If a listed parameter or name is not in ``model``, or nothing is selected.

    Examples
    --------
    >>> import torch
    >>> from unitary_lowrank.backends.torch import ProjUNN, haar_, unitary_groups
    >>> model = torch.nn.Linear(16, 4, bias=True)
    >>> _ = haar_(model.weight.data)  # orthonormal rows
    >>> opt = ProjUNN(torch.optim.Adam(unitary_groups(model, [model.weight], rank=2), lr=1e-3))
    >>> [len(g["params"]) for g in opt.param_groups], opt.param_groups[1]["unitary"]
    ([1, 1], True)
    """
    named = list(model.named_parameters())
    if callable(unitary):
        selected = {name for name, p in named if unitary(name, p)}
    else:
        wanted = list(unitary)
        by_id = {id(p): name for name, p in named}
        names = {name for name, _ in named}
        selected = set()
        for item in wanted:
            if isinstance(item, str):
                if item not in names:
                    raise ValueError(f"unitary_groups: the model has no parameter named {item!r}")
                selected.add(item)
            elif isinstance(item, torch.Tensor):
                if id(item) not in by_id:
                    raise ValueError(
                        f"unitary_groups: a listed tensor of shape {tuple(item.shape)} is not a parameter of the model"
                    )
                selected.add(by_id[id(item)])
            else:
                raise TypeError(f"unitary_groups: unitary lists parameters or names; got {type(item).__name__}")
    if not selected:
        raise ValueError("unitary_groups: no parameter selected as unitary")
    rest = [(name, p) for name, p in named if name not in selected]
    chosen = [(name, p) for name, p in named if name in selected]
    groups = []
    if rest:
        groups.append({"params": [p for _, p in rest], "param_names": [name for name, _ in rest]})
    groups.append(
        {"params": [p for _, p in chosen], "param_names": [name for name, _ in chosen], "unitary": True, **options}
    )
    return groups
