"""Least-squares lines a + b*N over corpus sizes, their standard errors, and their values at the
paper's 13,353,718 blocks: how the scale benchmarks extrapolate what they measure."""
from typing import Dict, List, Sequence, Tuple

import numpy as np

PAPER_BLOCKS = 13_353_718


def fit_linear(points: Sequence[Tuple[float, float]]) -> Dict[str, float]:
  """Least-squares fit y = a + b * N of (N, y) points, with r2 and, from three points on, the
  slope's standard error `b_se`. With fewer than two distinct N the fit is proportional (a = 0,
  b = mean of y / N): a figure measured at one size only."""
  n = np.asarray([p[0] for p in points], np.float64)
  y = np.asarray([p[1] for p in points], np.float64)
  if len(n) == 0:
    raise ValueError("fit_linear needs at least one point.")
  if len(np.unique(n)) < 2:
    return {"a": 0.0, "b": float(np.mean(y / n)), "points": len(n), "kind": "proportional"}
  (a, b), *_ = np.linalg.lstsq(np.stack([np.ones_like(n), n], axis=1), y, rcond=None)
  resid = y - (a + b * n)
  total = float(np.sum((y - y.mean()) ** 2))
  r2 = 1.0 - float(np.sum(resid ** 2)) / total if total > 0 else 1.0
  out = {"a": float(a), "b": float(b), "points": len(n), "kind": "a+b*N", "r2": r2}
  if len(n) > 2:
    out["b_se"] = float(np.sqrt(np.sum(resid ** 2) / (len(n) - 2) / np.sum((n - n.mean()) ** 2)))
  return out


def extrapolate(fit: Dict[str, float], num_blocks: float = PAPER_BLOCKS) -> float:
  """The fitted figure at `num_blocks`."""
  return fit["a"] + fit["b"] * num_blocks


def fit_figures(per_size: Dict[int, Dict[str, float]]) -> Dict[str, Dict[str, float]]:
  """{figure: fit + its value at 13.35M blocks} over sizes {num_blocks: {figure: value}}."""
  series: Dict[str, List[Tuple[float, float]]] = {}
  for n, figures in sorted(per_size.items()):
    for name, value in figures.items():
      if value is not None:
        series.setdefault(name, []).append((float(n), float(value)))
  return {name: dict(fit, per_block=fit["b"], at_paper_scale=extrapolate(fit))
          for name, fit in ((name, fit_linear(p)) for name, p in sorted(series.items()))}


def standard_errors(points: Sequence[Tuple[float, float]], fit: Dict, at: float) -> Dict:
  """Standard errors of the a + b*N `fit` over `points` and of its value at N = `at` (residual
  variance over n - 2 degrees of freedom); None without 3 distinct sizes (two fit any line)."""
  n = np.asarray([p[0] for p in points], np.float64)
  y = np.asarray([p[1] for p in points], np.float64)
  if len(np.unique(n)) < 3:
    return {"a": None, "b": None, "at": None}
  s2 = float(np.sum((y - (fit["a"] + fit["b"] * n)) ** 2)) / (len(n) - 2)
  sxx = float(np.sum((n - n.mean()) ** 2))
  return {"a": float(np.sqrt(s2 * (1 / len(n) + n.mean() ** 2 / sxx))),
          "b": float(np.sqrt(s2 / sxx)),
          "at": float(np.sqrt(s2 * (1 / len(n) + (at - n.mean()) ** 2 / sxx)))}
