"""The one error of the expression language: :class:`ExpressionError`."""

from __future__ import annotations

from typing import Final

__all__ = ["ExpressionError"]

#: a text longer than this is shown as an excerpt around the position in messages
_SHOWN: Final = 80


class ExpressionError(ValueError):
    """An expression that cannot be parsed or type-checked, or (from a compiled expression)
    an input value of the wrong type. ``problem`` says what is wrong; ``position`` is the
    0-based character offset in ``text`` it points at (``None`` when it is not about a place
    in the text). ``str()`` names the position 1-based, e.g. ``unknown function 'abs' at
    position 1 of 'abs(x)'``; a text over 80 characters is shown as ``excerpt``, the 30
    characters either side of the position with ``...`` for the rest."""

    def __init__(self, problem: str, *, text: str | None = None, position: int | None = None):
        self.problem = problem
        self.text = text
        self.position = position
        self.excerpt = text
        if text is not None and len(text) > _SHOWN:
            at = position or 0
            start, end = max(0, at - 30), min(len(text), at + 30)
            self.excerpt = (
                ("..." if start else "") + text[start:end] + ("..." if end < len(text) else "")
            )
        if text is not None and position is not None:
            message = f"{problem} at position {position + 1} of {self.excerpt!r}"
        elif text is not None:
            message = f"{problem} in {self.excerpt!r}"
        else:
            message = problem
        super().__init__(message)
