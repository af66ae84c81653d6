"""Layers that decay a frozen pretrained layer into a trainable low-rank adapter.

Training forward, with decay factor d in [0, 1] (METHOD.md, "One target layer")::

    y = d (W x + b) + N x + s B A x + C,    N ~ Normal((1 - d) m, (1 - d^2) sigma^2)

computed with **one** matmul/conv on the effective weight ``d W + N`` (the notes ran the full
layer twice). With d == 0 and the noise off the frozen path is skipped. In ``eval()`` the noise
is replaced by its mean, so evaluation is deterministic. ``export_view`` makes the layer compute
only ``s B A x + C``: exactly what ``compress`` produces. Compression is always an explicit call,
never a side effect of ``eval()`` (the notes' ConvLoRA merged on ``eval()``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InjectionError
from .schedules import noise_moments

try:  # Hugging Face GPT-2 style layer (weight stored transposed, (in, out)).
    from transformers.pytorch_utils import Conv1D as HFConv1D
except Exception:  # pragma: no cover - transformers is a dependency, but keep layers importable
    HFConv1D = None  # type: ignore[assignment]

#: Seeds of different steps/layers are spread with these primes so that they never collide.
_STEP_PRIME = 1_000_003
_LAYER_PRIME = 7_919


@dataclass(frozen=True)
class Geometry:
    """Shape facts of a target layer, in PyTorch ``(out, in)`` terms.

    ``fan_in`` is the input size of one output unit (``in/groups * kh * kw`` for a conv);
    ``kernel`` is ``kh * kw`` (1 for linear layers). MACs are per output position
    (per token for linear layers, per output pixel for convs).
    """

    kind: str
    in_features: int
    out_features: int
    groups: int = 1
    kernel: int = 1
    has_bias: bool = False

    @property
    def fan_in(self) -> int:
        return self.in_features // self.groups * self.kernel

    @property
    def max_rank(self) -> int:
        """Largest meaningful rank: the full rank of the weight (summed over groups)."""
        return self.groups * min(self.out_features // self.groups, self.fan_in)

    def dense_params(self) -> int:
        return self.out_features * self.fan_in + (self.out_features if self.has_bias else 0)

    def dense_macs(self) -> int:
        return self.out_features * self.fan_in

    def lowrank_params(self, r: int, with_c: bool) -> int:
        return r * self.fan_in + self.out_features * (r // self.groups) + (
            self.out_features if with_c else 0
        )

    def lowrank_macs(self, r: int) -> int:
        return r * self.fan_in + self.out_features * (r // self.groups)


def geometry(module: nn.Module) -> Geometry:
    """Geometry of a supported layer; raises ``InjectionError`` for any other type."""
    if isinstance(module, nn.Linear):
        return Geometry("linear", module.in_features, module.out_features, 1, 1,
                        module.bias is not None)
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size[0] * module.kernel_size[1]
        return Geometry("conv2d", module.in_channels, module.out_channels, module.groups, k,
                        module.bias is not None)
    if HFConv1D is not None and isinstance(module, HFConv1D):
        n_in, n_out = module.weight.shape
        return Geometry("conv1d", n_in, n_out, 1, 1, module.bias is not None)
    raise InjectionError(
        f"unsupported layer type {type(module).__name__}: decaylora wraps nn.Linear, nn.Conv2d "
        "and transformers Conv1D; remove it from target_modules or add it to exclude_modules"
    )


def supported(module: nn.Module) -> bool:
    try:
        geometry(module)
    except InjectionError:
        return False
    return True


class DecayLayer(nn.Module):
    """Frozen ``base_layer`` + trainable ``lora_A``, ``lora_B`` and optional bias ``C``.

    Buffers (saved in the state dict, identical on every process): ``decay`` (d),
    ``noise_active``, ``step`` (seeds the noise), ``noise_mean`` / ``noise_std`` (moments of W,
    computed once at wrap time; shape ``(1,)`` for global stats, ``(out,)`` per output unit).
    Non-persistent buffer: ``weight_spectral_norm`` (``||W||_2``, see ``weight_spectral``).
    ``noise_cap`` (None: off) caps the noise std so that its expected spectral norm stays below
    ``noise_cap * d * ||W||_2`` (see ``noise_params``).
    """

    #: Broadcast shape of a per-output statistic against the native weight layout.
    _per_out_view: tuple[int, ...] = (-1, 1)

    def __init__(
        self,
        base_layer: nn.Module,
        r: int,
        scale: float = 1.0,
        *,
        c_init: str = "zeros",
        noise_stats: str = "global",
        noise_scale: float = 1.0,
        noise_seed: int = 0,
        init: str = "lora",
        noise_cap: float | None = None,
    ) -> None:
        super().__init__()
        self.geometry = geometry(base_layer)
        self.base_layer = base_layer
        for p in self.base_layer.parameters():
            p.requires_grad_(False)
        self.r = r
        self.scale = float(scale)
        self.noise_stats = noise_stats
        self.noise_scale = float(noise_scale)
        self.noise_cap = None if noise_cap is None else float(noise_cap)
        self.noise_seed = int(noise_seed)
        self.export_view = False
        w = self.base_layer.weight
        self.lora_A, self.lora_B = self._make_adapter(r)
        self.lora_A.to(device=w.device, dtype=w.dtype)
        self.lora_B.to(device=w.device, dtype=w.dtype)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # as LoRA
        nn.init.zeros_(self.lora_B.weight)
        self.bias_moved = False
        if c_init == "none":
            self.C = None
        else:
            b = self.base_layer.bias
            # "copy" moves b into C: the frozen path then decays W only, so the wrapped layer
            # still computes W x + b at d = 1 (instead of W x + 2 b).
            self.bias_moved = c_init == "copy" and b is not None
            init_c = b.detach().clone() if self.bias_moved else torch.zeros(
                self.geometry.out_features, device=w.device, dtype=w.dtype
            )
            self.C = nn.Parameter(init_c)
        if init in ("svd", "svd-residual"):  # before the noise statistics: they describe
            self._init_svd(residual=init == "svd-residual")  # the weight that decays
        with torch.no_grad():
            w2 = self.weight_2d().float()
            if noise_stats == "per_output":
                mean, var = w2.mean(dim=1), w2.var(dim=1, unbiased=False)
            else:
                mean, var = w2.mean().reshape(1), w2.var(unbiased=False).reshape(1)
        self.register_buffer("noise_mean", mean.to(w.dtype))
        self.register_buffer("noise_std", var.sqrt().to(w.dtype))
        self.register_buffer("decay", torch.ones((), dtype=torch.float32, device=w.device))
        self.register_buffer("noise_active", torch.zeros((), dtype=torch.bool, device=w.device))
        self.register_buffer("step", torch.zeros((), dtype=torch.int64, device=w.device))
        # ||W||_2 of the (out, fan_in) weight that decays. Not persistent: a pure function of the
        # frozen W, recomputed at wrap time (adapter files and checkpoints keep their format).
        # Computed here when the noise is capped; otherwise lazily (an SVD per layer costs
        # seconds on large models) by the first ``weight_spectral()`` call, e.g. the SNR log.
        self.register_buffer("weight_spectral_norm",
                             torch.full((), math.nan, dtype=torch.float32, device=w.device),
                             persistent=False)
        self._spectral_ready = False
        if self.noise_cap is not None:
            self.weight_spectral()
        self._generators: dict[torch.device, torch.Generator] = {}

    # ----- subclass hooks -------------------------------------------------------------------
    def _make_adapter(self, r: int) -> tuple[nn.Module, nn.Module]:
        raise NotImplementedError

    def weight_2d(self) -> torch.Tensor:
        """The frozen weight as an ``(out, fan_in)`` view."""
        return self.base_layer.weight.reshape(self.geometry.out_features, -1)

    def _frozen(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        """The base layer's operation with a substitute weight/bias (native layouts)."""
        raise NotImplementedError

    def _add_c(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.C is None else y + self.C

    # ----- state ----------------------------------------------------------------------------
    def set_state(self, decay: float, noise_active: bool, step: int) -> None:
        """Set d, whether noise is drawn, and the step that seeds the noise."""
        self.decay.fill_(float(decay))
        self.noise_active.fill_(bool(noise_active))
        self.step.fill_(int(step))

    @property
    def d(self) -> float:
        return float(self.decay)

    def weight_spectral(self) -> torch.Tensor:
        """``||W||_2`` of the frozen ``(out, fan_in)`` weight (float32 scalar buffer, computed
        once: on the first call, or at wrap time when ``noise_cap`` is set)."""
        if not self._spectral_ready:  # a Python flag: testing the buffer would sync a GPU
            with torch.no_grad():
                self.weight_spectral_norm.fill_(
                    torch.linalg.matrix_norm(self.weight_2d().float(), ord=2))
            self._spectral_ready = True
        return self.weight_spectral_norm

    def _noise_dims(self) -> float:
        """``sqrt(out) + sqrt(fan_in)``: E||G||_2 / std for an iid Gaussian (out, fan_in) G."""
        g = self.geometry
        return math.sqrt(g.out_features) + math.sqrt(g.fan_in)

    def noise_params(self, d: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of N at decay d, broadcastable against the native weight layout.

        With ``noise_cap`` = c the std (every entry, by one factor) is capped so that the
        expected spectral norm of the zero-mean part, ``max std * (sqrt(out) + sqrt(fan_in))``,
        stays <= ``c * d * ||W||_2``; the mean is unchanged."""
        d = self.d if d is None else d
        mean = self.noise_mean * (1.0 - d)
        std = self.noise_std * (self.noise_scale * math.sqrt(max(1.0 - d * d, 0.0)))
        if self.noise_cap is not None:  # tensor ops only: no device sync on the hot path
            cap = self.weight_spectral() * (self.noise_cap * d / self._noise_dims())
            factor = (cap / std.max().float().clamp_min(1e-30)).clamp_max(1.0)
            std = std * factor.to(std.dtype)
        if self.noise_stats == "per_output":
            return mean.view(self._per_out_view), std.view(self._per_out_view)
        return mean, std

    @torch.no_grad()
    def signal_to_noise(self, d: float | None = None) -> tuple[float, float]:
        """``(snr_fro, snr_spec)`` of the effective weight ``d W + N`` at decay d (default: the
        current one), from the buffers (no sampling). Signal ``d W``; noise: the zero-mean part
        of N (its mean ``(1 - d) m`` is deterministic and not counted).

        ``snr_fro = d ||W||_F / (std_rms sqrt(out fan_in))`` (std_rms: the RMS of the per-entry
        std, so the denominator is E||N - mean||_F up to O(1/numel)); ``snr_spec = d ||W||_2 /
        (std_max (sqrt(out) + sqrt(fan_in)))``, the Gaussian estimate of ||N - mean||_2 (an upper
        estimate with per-output stats, the quantity ``noise_cap`` bounds: capped noise has
        ``snr_spec >= 1 / noise_cap``). Both are ``inf`` when the noise is off (when
        ``d`` is given: whatever the state) or has zero std.
        """
        if d is None and not bool(self.noise_active):
            return math.inf, math.inf
        d = self.d if d is None else float(d)
        std = self.noise_params(d)[1].float()
        g = self.geometry
        std_rms = float(std.square().mean().sqrt())
        std_max = float(std.max())
        if std_max == 0.0:
            return math.inf, math.inf
        w2 = self.weight_2d().float()
        snr_fro = d * float(w2.norm()) / (std_rms * math.sqrt(g.out_features * g.fan_in))
        snr_spec = d * float(self.weight_spectral()) / (std_max * self._noise_dims())
        return snr_fro, snr_spec

    def _generator(self, device: torch.device) -> torch.Generator:
        g = self._generators.get(device)
        if g is None:
            g = self._generators[device] = torch.Generator(device=device)
        return g

    def noise_seed_for_step(self) -> int:
        return (self.noise_seed * _STEP_PRIME + int(self.step)) % (2**63 - 1)

    def sample_noise(self) -> torch.Tensor:
        """N for the current step: a pure function of (seed, layer, step), so it is
        reproducible after resume and identical on every process."""
        w = self.base_layer.weight
        g = self._generator(w.device)
        g.manual_seed(self.noise_seed_for_step())
        mean, std = self.noise_params()
        if self.noise_stats != "per_output" and w.device.type == "cpu":
            # One pass instead of three: normal_ applies the scalar mean/std inside the sampling
            # kernel (the same generator stream as randn * std + mean, equal up to rounding).
            # CPU only: reading the two scalars would cost a device sync per layer on a GPU.
            return torch.empty(w.shape, device=w.device, dtype=w.dtype).normal_(
                float(mean), float(std), generator=g)
        z = torch.randn(w.shape, generator=g, device=w.device, dtype=w.dtype)
        return z.mul_(std).add_(mean)

    def effective_weight(self, noise: torch.Tensor | None = None) -> torch.Tensor:
        """``d W + N`` (training: a fresh sample unless given; eval: N replaced by its mean)."""
        w, d = self.base_layer.weight, self.d
        if not bool(self.noise_active):
            return w if d == 1.0 else w * d
        if noise is None:
            if self.training:  # a fresh sample owned here: build d W + N in place
                noise = self.sample_noise()
                return noise.add_(w, alpha=d) if d != 0.0 else noise
            else:
                noise = torch.broadcast_to(self.noise_params()[0], w.shape)
        return noise.add(w, alpha=d) if d != 0.0 else noise.expand_as(w)

    # ----- forward --------------------------------------------------------------------------
    def adapter_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``s B A x`` (without C)."""
        return self.lora_B(self.lora_A(x)) * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.export_view:
            return self._add_c(self.adapter_forward(x))
        d, noisy = self.d, bool(self.noise_active)
        if d == 0.0 and not noisy:  # cool-down: the frozen path is gone
            return self._add_c(self.adapter_forward(x))
        b = None if self.bias_moved else self.base_layer.bias
        bias = None if b is None else (b if d == 1.0 else b * d)
        if self.C is not None:  # C rides along as the bias of the single frozen matmul
            bias = self.C if bias is None else bias + self.C
        with torch.no_grad():
            weight = self.effective_weight()
        return self._frozen(x, weight, bias) + self.adapter_forward(x)

    def reference_forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """The unfused formula ``d (W x + b) + N x + s B A x + C`` (for tests/benchmarks)."""
        b = None if self.bias_moved else self.base_layer.bias
        y = self._frozen(x, self.base_layer.weight, b) * self.d
        if noise is not None:
            y = y + self._frozen(x, noise, None)
        return self._add_c(y + self.adapter_forward(x))

    # ----- compression ----------------------------------------------------------------------
    def _init_svd(self, residual: bool = False) -> None:
        """B A := best rank-r approximation of W / s (truncated SVD, split as sqrt(S) each).

        ``residual``: the frozen weight becomes ``W - s B A`` (a new tensor; the caller's W is
        not modified), so the layer's function is unchanged at d = 1 and only the residual
        decays while the adapter starts from the best rank-r approximation."""
        if self.geometry.groups != 1:
            raise InjectionError("init='svd' is not supported for grouped convolutions")
        with torch.no_grad():
            u, s, vh = torch.linalg.svd(self.weight_2d().float(), full_matrices=False)
            root = s[: self.r].sqrt() / math.sqrt(self.scale)
            b = (u[:, : self.r] * root).to(self.lora_B.weight.dtype)
            a = (root[:, None] * vh[: self.r]).to(self.lora_A.weight.dtype)
            self.lora_B.weight.copy_(b.reshape(self.lora_B.weight.shape))
            self.lora_A.weight.copy_(a.reshape(self.lora_A.weight.shape))
            if residual:
                w = self.base_layer.weight
                self.base_layer.weight = nn.Parameter(w.detach().clone(), requires_grad=False)
                approx = (self.lora_B.weight.reshape(b.shape) @ self.lora_A.weight.reshape(
                    a.shape)) * self.scale
                self.weight_2d().sub_(approx.to(w.dtype))  # a view of the new tensor

    def to_compressed(self) -> nn.Sequential:
        """Plain-PyTorch low-rank module ``Sequential(A, B)`` with s folded into B, C as bias."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (f"r={self.r}, scale={self.scale:g}, d={self.d:.4g}, "
                f"noise={'on' if bool(self.noise_active) else 'off'}, C={self.C is not None}")


class DecayLinear(DecayLayer):
    """``nn.Linear`` -> ``Linear(in, r, bias=False)`` then ``Linear(r, out)``."""

    def _make_adapter(self, r: int) -> tuple[nn.Module, nn.Module]:
        g = self.geometry
        return nn.Linear(g.in_features, r, bias=False), nn.Linear(r, g.out_features, bias=False)

    def weight_2d(self) -> torch.Tensor:
        return self.base_layer.weight

    def _frozen(self, x, weight, bias):
        return F.linear(x, weight, bias)

    def to_compressed(self) -> nn.Sequential:
        g = self.geometry
        a = nn.Linear(g.in_features, self.r, bias=False)
        b = nn.Linear(self.r, g.out_features, bias=self.C is not None)
        return _fill(self, a, b)


class DecayConv1D(DecayLinear):
    """Hugging Face GPT-2 ``Conv1D`` (weight ``(in, out)``): same adapter as a Linear."""

    _per_out_view = (1, -1)

    def weight_2d(self) -> torch.Tensor:
        return self.base_layer.weight.t()

    def _frozen(self, x, weight, bias):
        y = x @ weight
        return y if bias is None else y + bias


class DecayConv2d(DecayLayer):
    """``nn.Conv2d`` -> a real low-rank convolution: k x k conv ``in -> r`` with the base conv's
    stride, padding, dilation, padding mode and groups, then a 1 x 1 conv ``r -> out`` with the
    same groups (each group gets rank r / groups)."""

    _per_out_view = (-1, 1, 1, 1)

    def _make_adapter(self, r: int) -> tuple[nn.Module, nn.Module]:
        c = self.base_layer
        a = nn.Conv2d(c.in_channels, r, c.kernel_size, stride=c.stride, padding=c.padding,
                      dilation=c.dilation, groups=c.groups, bias=False,
                      padding_mode=c.padding_mode)
        b = nn.Conv2d(r, c.out_channels, 1, groups=c.groups, bias=False)
        return a, b

    def _frozen(self, x, weight, bias):
        return self.base_layer._conv_forward(x, weight, bias)

    def _add_c(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.C is None else y + self.C.view(1, -1, 1, 1)

    def to_compressed(self) -> nn.Sequential:
        a_src, b_src = self.lora_A, self.lora_B
        a = nn.Conv2d(a_src.in_channels, self.r, a_src.kernel_size, stride=a_src.stride,
                      padding=a_src.padding, dilation=a_src.dilation, groups=a_src.groups,
                      bias=False, padding_mode=a_src.padding_mode)
        b = nn.Conv2d(self.r, b_src.out_channels, 1, groups=b_src.groups,
                      bias=self.C is not None)
        return _fill(self, a, b)


def _fill(layer: DecayLayer, a: nn.Module, b: nn.Module) -> nn.Sequential:
    w = layer.lora_A.weight
    a.to(device=w.device, dtype=w.dtype)
    b.to(device=w.device, dtype=w.dtype)
    with torch.no_grad():
        a.weight.copy_(layer.lora_A.weight)
        b.weight.copy_(layer.lora_B.weight * layer.scale)
        if layer.C is not None:
            b.bias.copy_(layer.C)
    return nn.Sequential(a, b)


def decay_layer_class(module: nn.Module) -> type[DecayLayer]:
    kind = geometry(module).kind
    return {"linear": DecayLinear, "conv2d": DecayConv2d, "conv1d": DecayConv1D}[kind]


def noise_seed(seed: int, layer_index: int) -> int:
    """Per-layer noise seed: distinct for every layer, stable across processes."""
    return seed * _LAYER_PRIME + layer_index + 1


__all__ = [
    "DecayConv1D", "DecayConv2d", "DecayLayer", "DecayLinear", "Geometry", "geometry",
    "noise_moments", "supported",
]
