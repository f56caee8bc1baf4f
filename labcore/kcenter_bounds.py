"""The rigorous error bounds of KCenterGreedy's fp32 screen (see ``labcore.kcenter``, step 3 of its docstring).

``_Bound`` turns a float32 q = ||x'||^2 + ||c'||^2 - 2 x'.c' into an interval that provably holds the float64
distance of ``labcore.kcenter.kcenter_greedy_reference``; ``tests/test_kcenter.py::test_fp32_screen_bound_holds``
checks it on adversarial data.
"""
from __future__ import annotations

import math

import torch

_U64 = 2.0 ** -53  # unit roundoff of float64
_U32 = 2.0 ** -24  # unit roundoff of float32


def _matmul_input_roundoff(device: torch.device) -> float:
    """Unit roundoff of the operands as the float32 matmul unit sees them (TF32 / bf16 if precision was lowered)."""
    precision = torch.get_float32_matmul_precision()
    if device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        precision = "high" if precision == "highest" else precision
    return {"highest": _U32, "high": 2.0 ** -11, "medium": 2.0 ** -8}.get(precision, 2.0 ** -8)


class _Bound:
    """Turn the float32 screen q = fl(||x'||^2 + ||c'||^2 - 2 x'.c') into bounds on the reference float64 d(x, c).

    x, c are the exact float64 vectors, x' = fl32(x), c' = fl32(c), u = 2^-24, u_in the matmul operand roundoff,
    gamma_d = d u / (1 - d u) (Higham, Accuracy and Stability, Eq. 3.4: any summation order, FMA or not).
      (a) | ||x' - c'|| - ||x - c|| | <= u (||x|| + ||c||) <= delta = u/(1-u) (||x'|| + ||c'||)
      (b) | q - ||x' - c'||^2 | <= E = kappa (||x'||^2 + ||c'||^2) =: kappa P,
          kappa = (3 gamma_{d+1} (1+u_in)^2 + 2 (2 u_in + u_in^2) + 3 u) / (1 - gamma_d)^2
          (norms: gamma_d P; the matmul, whether it adds ||x||^2 + ||c||^2 at the end or accumulates onto it
          (BLAS beta = 1): <= 2 gamma_{d+1} P; operand rounding 2u_in; the fp32 additions: 3u; P from the computed
          norms: the 1/(1-gamma_d) factors)
      (c) | d64 - ||x - c|| | <= rho ||x - c||, rho = (d + 12) u64 (subtract, square, d-term sum, sqrt, and the
          float64 arithmetic of this class).
    Hence  L = (sqrt(max(q - E, 0)) - delta)(1 - rho) <= d64(x, c) <= H = (sqrt(q + E) + delta)(1 + rho).
    Per row, ||c'|| is replaced by the largest centre norm of the block (larger E, delta: still valid), so L and H
    are monotone in q and the test "L <= best" becomes "q <= T(best)".
    With ``u = 2^-53`` the same proof bounds a float64 screen of the float64 rows themselves (x' = x: delta is then
    slack), which the resident path of ``labcore.kcenter_resident`` uses to settle near-ties on the device.
    """

    def __init__(self, d: int, u_in: float, u: float = _U32):
        gamma = d * u / (1.0 - d * u)
        gamma1 = (d + 1) * u / (1.0 - (d + 1) * u)
        if gamma1 >= 0.1:
            raise ValueError(f"d={d} features is too many for the float32 screen")
        self.u = u  # unit roundoff of the screen's working precision (2^-24; 2^-53 for a float64 screen)
        self.kappa = (3 * gamma1 * (1 + u_in) ** 2 + 2 * (2 * u_in + u_in ** 2) + 3 * u) / (1 - gamma) ** 2
        self.norm_scale = 1.0 / (1.0 - gamma)  # ||x'||^2 <= fl(sum x'^2) / (1 - gamma)
        self.rho = (d + 12) * _U64

    def terms(self, xn: torch.Tensor, cn_max: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(E, delta) per row (float64) from the rows' fp32 squared norms xn (n,) and the block's max centre norm."""
        xn64 = xn.double() * self.norm_scale
        cn64 = cn_max * self.norm_scale
        E = self.kappa * (xn64 + cn64)
        delta = self.u / (1 - self.u) * (xn64.sqrt() + math.sqrt(cn64)) * (1 + 4 * _U64)
        return E, delta

    def upper(self, q: torch.Tensor, E: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """H: an upper bound of d64 from q (float64 math on (n,) vectors)."""
        return ((q.double() + E).sqrt() + delta) * (1 + self.rho)

    def lower(self, q: torch.Tensor, E: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """L: a lower bound of d64 from q (float64 math)."""
        return ((q.double() - E).clamp(min=0).sqrt() - delta).clamp(min=0) * (1 - self.rho)

    def threshold(self, best: torch.Tensor, E: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """T as float32 (rounded up): q > T implies L > best, i.e. d64 > best (the pair cannot be the minimum)."""
        T = (best / (1 - self.rho) + delta) ** 2 + E
        return (T * (1 + 2.0 ** -20)).float()
