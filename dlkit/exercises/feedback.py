"""The :class:`Feedback` every ``check_*`` function returns, and its two constructors."""

from __future__ import annotations

import dataclasses

__all__ = ["Feedback", "_right", "_wrong"]


@dataclasses.dataclass(frozen=True)
class Feedback:
    """The verdict of a check: ``ok``, what was found, and a hint when it is wrong."""

    ok: bool
    message: str
    hint: str = ""

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if self.ok:
            return f"✔ Correct. {self.message}"
        text = f"✘ Not yet. {self.message}"
        return f"{text}\n   Hint: {self.hint}" if self.hint else text

    __repr__ = __str__


def _right(message: str) -> Feedback:
    return Feedback(True, message)


def _wrong(message: str, hint: str = "") -> Feedback:
    return Feedback(False, message, hint)
