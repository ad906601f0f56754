"""Measuring one artifact on one device: the protocol the gate and the agent share."""

from __future__ import annotations

from .protocol import Measurement, MeasureSpec

__all__ = ["MeasureSpec", "Measurement"]
