"""A tiny, safe expression language for deriving a machine signal from tags.

Grammar (no function calls, no attribute access, nothing executed)::

    expr   := or
    or     := and ("or" and)*
    and    := not ("and" not)*
    not    := "not" not | cmp
    cmp    := atom (("<" | "<=" | ">" | ">=" | "==" | "!=") atom | "in" "[" num ("," num)* "]")?
    atom   := NUMBER | "true" | "false" | TAGREF | "(" expr ")"
    TAGREF := name "." name            (device.tag)

Examples: ``press1.speed > 5``, ``press1.state in [3, 4]``,
``press1.running and not press1.estop``. An expression is at most
:data:`MAX_CHARS` characters and nests parentheses and ``not`` at most
:data:`MAX_DEPTH` deep (the parser is recursive: without a bound, a few hundred
parentheses would exhaust Python's stack). Parsing happens once at config load;
evaluation is a closure over a value lookup and never raises on missing
values: it returns ``None`` ("unknown"), which the caller turns into a bad
sample.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Lookup = Mapping[str, object]
Evaluator = Callable[[Lookup], object]

_TOKEN = re.compile(
    r"\s*(?:(?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|(?P<op><=|>=|==|!=|<|>|\(|\)|\[|\]|,)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z_][A-Za-z0-9_\-]*)?))"
)
_CMP: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_KEYWORDS = {"and", "or", "not", "in", "true", "false"}
MAX_CHARS = 1000
MAX_DEPTH = 32


class ExprError(ValueError):
    """The expression text is not valid; the message says where."""


@dataclass(frozen=True, slots=True)
class Compiled:
    """A parsed expression: the tags it reads and its evaluator.

    Two compilations of the same text are equal (a reload compares machines by value).
    """

    text: str
    tags: tuple[str, ...]
    evaluate: Evaluator = field(compare=False)


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExprError(f"unexpected character at position {pos}: {text[pos : pos + 10]!r}")
        tokens.append(m.group(0).strip())
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0
        self.tags: list[str] = []

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError(f"nested more than {MAX_DEPTH} levels deep (parentheses and 'not')")

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None, *, what: str | None = None) -> str:
        tok = self.peek()
        if tok is None:
            raise ExprError(f"unexpected end of expression, expected {what or expected or 'more'}")
        if expected is not None and tok != expected:
            raise ExprError(f"expected {expected!r}, got {tok!r}")
        self.i += 1
        return tok

    def parse(self) -> Evaluator:
        ev = self.or_()
        if self.peek() is not None:
            raise ExprError(f"unexpected {self.peek()!r}")
        return ev

    def or_(self) -> Evaluator:
        parts = [self.and_()]
        while self.peek() == "or":
            self.take()
            parts.append(self.and_())
        if len(parts) == 1:
            return parts[0]
        return lambda env: _tri_or([p(env) for p in parts])

    def and_(self) -> Evaluator:
        parts = [self.not_()]
        while self.peek() == "and":
            self.take()
            parts.append(self.not_())
        if len(parts) == 1:
            return parts[0]
        return lambda env: _tri_and([p(env) for p in parts])

    def not_(self) -> Evaluator:
        if self.peek() == "not":
            self.take()
            self.enter()
            inner = self.not_()
            self.depth -= 1
            return lambda env: None if (v := inner(env)) is None else not bool(v)
        return self.cmp()

    def cmp(self) -> Evaluator:
        left = self.atom()
        tok = self.peek()
        if tok in _CMP:
            self.take()
            right = self.atom()
            fn = _CMP[tok]

            def compare(env: Lookup) -> object:
                a, b = left(env), right(env)
                if a is None or b is None:
                    return None
                try:
                    return fn(a, b)
                except TypeError:
                    return None

            return compare
        if tok == "in":
            self.take()
            self.take("[")
            members = [self.number()]
            while self.peek() == ",":
                self.take()
                members.append(self.number())
            self.take("]")
            allowed = frozenset(members)
            return lambda env: None if (v := left(env)) is None else v in allowed
        return left

    def number(self) -> float:
        tok = self.take(what="a number")
        try:
            return float(tok)
        except ValueError:
            raise ExprError(f"expected a number, got {tok!r}") from None

    def atom(self) -> Evaluator:
        tok = self.take(what="a value")
        if tok == "(":
            self.enter()
            inner = self.or_()
            self.take(")")
            self.depth -= 1
            return inner
        if tok == "true":
            return lambda env: True
        if tok == "false":
            return lambda env: False
        if tok in _KEYWORDS:
            raise ExprError(f"unexpected keyword {tok!r}")
        try:
            value = float(tok)
        except ValueError:
            pass
        else:
            return lambda env: value
        if "." not in tok:
            raise ExprError(f"tag reference {tok!r} must be written device.tag")
        self.tags.append(tok)
        return lambda env: env.get(tok)


def _tri_and(values: list[object]) -> object:
    if any(v is not None and not v for v in values):
        return False
    if any(v is None for v in values):
        return None
    return True


def _tri_or(values: list[object]) -> object:
    if any(v is not None and v for v in values):
        return True
    if any(v is None for v in values):
        return None
    return False


def compile_expr(text: str) -> Compiled:
    """Parse an expression once; raise :class:`ExprError` with a readable message."""
    if len(text) > MAX_CHARS:
        raise ExprError(f"expression of {len(text)} characters, at most {MAX_CHARS}")
    parser = _Parser(text)
    evaluate = parser.parse()
    return Compiled(text=text, tags=tuple(dict.fromkeys(parser.tags)), evaluate=evaluate)
