"""hpo-vidpred: hyperparameter-optimization studies for video-prediction networks."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
