"""Renderers turn a Report into something to show; they return values and never print."""
