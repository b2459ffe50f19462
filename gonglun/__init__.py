"""Gonglun: the money and trust side of a collectibles marketplace, as a hook platform."""

__version__ = "0.1.0"
