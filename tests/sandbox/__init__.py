"""Tests of the gateway sandbox (gonglun.sandbox)."""
