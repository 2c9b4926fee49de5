"""The one error of the expression language: :class:`ExpressionError`."""

from __future__ import annotations

__all__ = ["ExpressionError"]


class ExpressionError(ValueError):
    """An expression that cannot be parsed or type-checked, or (from a compiled expression)
    an input value of the wrong type. ``problem`` says what is wrong; ``position`` is the
    0-based character offset in ``text`` it points at (``None`` when it is not about a place
    in the text). ``str()`` names the position 1-based, e.g. ``unknown function 'abs' at
    position 1 of 'abs(x)'``."""

    def __init__(self, problem: str, *, text: str | None = None, position: int | None = None):
        self.problem = problem
        self.text = text
        self.position = position
        if text is not None and position is not None:
            message = f"{problem} at position {position + 1} of {text!r}"
        elif text is not None:
            message = f"{problem} in {text!r}"
        else:
            message = problem
        super().__init__(message)
