"""DynamoDB expression syntax: tokens, the parsed forms, and one recursive-descent parser for
update, condition and projection expressions.

Placeholders are resolved while parsing: ``#name`` becomes the attribute name it stands for,
``:value`` the attribute value (wire form), so the evaluators never see a placeholder. What
was used is recorded, because DynamoDB refuses a request that defines a placeholder no
expression uses. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from service.core.expressions._reserved import RESERVED_WORDS
from service.core.values import AttributeValue, canonical_bytes
from service.errors import ExpressionError

# NOTE: `#` and `:` appear in DynamoDB expressions only as the first character of a
# placeholder (expressions have no string literals), so tokens are enough to find them all.
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<name>\#[A-Za-z0-9_]+)
      | (?P<value>:[A-Za-z0-9_]+)
      | (?P<number>[0-9]+)
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op><>|<=|>=|[=<>()\[\],.+\-])
    )""",
    re.VERBOSE,
)
_KEYWORDS = frozenset({"SET", "REMOVE", "ADD", "DELETE", "AND", "OR", "NOT", "BETWEEN", "IN"})
_COMPARATORS = frozenset({"=", "<>", "<", "<=", ">", ">="})
UPDATE_FUNCTIONS = frozenset({"if_not_exists", "list_append"})
CONDITION_FUNCTIONS = frozenset(
    {"attribute_exists", "attribute_not_exists", "attribute_type", "begins_with", "contains"}
)


@dataclass(frozen=True)
class Token:
    kind: Literal["name", "value", "number", "word", "op", "end"]
    text: str
    at: int


def tokens(text: str) -> list[Token]:
    """The tokens of ``text``, ending with an ``end`` token. Raises ExpressionError on a
    character no DynamoDB expression contains."""
    out: list[Token] = []
    at = 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            out.append(Token("end", "", at))
            return out
        match = _TOKEN.match(text, at)
        if match is None or match.lastgroup is None:
            raise ExpressionError(f"Invalid expression: syntax error at {text[at : at + 12]!r}")
        kind = match.lastgroup
        out.append(Token(kind, match.group(kind), match.start(kind)))  # type: ignore[arg-type]
        at = match.end()


def rename_placeholders(text: str, *, prefix: str) -> str:
    """``text`` with every placeholder renamed: ``#a`` -> ``#<prefix>a``, ``:v`` ->
    ``:<prefix>v`` (to AND two expressions whose placeholders must not collide)."""
    out, last = [], 0
    for token in tokens(text):
        if token.kind in ("name", "value"):
            out.append(text[last : token.at])
            out.append(f"{token.text[0]}{prefix}{token.text[1:]}")
            last = token.at + len(token.text)
    out.append(text[last:])
    return "".join(out)


# ---- Parsed forms ------------------------------------------------------------------------

PathPart = str | int


@dataclass(frozen=True)
class Path:
    """A document path: a top-level attribute name, then map keys (str) and list indexes
    (int)."""

    parts: tuple[PathPart, ...]

    def __str__(self) -> str:
        return "[" + ", ".join(str(p) if isinstance(p, str) else f"[{p}]" for p in self.parts) + "]"

    def overlaps(self, other: Path) -> bool:
        """One is a prefix of the other (DynamoDB refuses two such paths in one expression)."""
        n = min(len(self.parts), len(other.parts))
        return self.parts[:n] == other.parts[:n]


@dataclass(frozen=True)
class Literal_:
    """An ExpressionAttributeValues entry, already looked up."""

    value: AttributeValue


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple[Operand, ...]


@dataclass(frozen=True)
class Arithmetic:
    op: Literal["+", "-"]
    left: Operand
    right: Operand


Operand = Path | Literal_ | Call | Arithmetic


@dataclass(frozen=True)
class Compare:
    op: str
    left: Operand
    right: Operand


@dataclass(frozen=True)
class Between:
    subject: Operand
    low: Operand
    high: Operand


@dataclass(frozen=True)
class In:
    subject: Operand
    options: tuple[Operand, ...]


@dataclass(frozen=True)
class And:
    left: Condition
    right: Condition


@dataclass(frozen=True)
class Or:
    left: Condition
    right: Condition


@dataclass(frozen=True)
class Not:
    condition: Condition


Condition = Compare | Between | In | And | Or | Not | Call


@dataclass(frozen=True)
class Update:
    """A parsed UpdateExpression: its actions by clause, in the order written, and the order
    of the clauses."""

    set: tuple[tuple[Path, Operand], ...] = ()
    remove: tuple[Path, ...] = ()
    add: tuple[tuple[Path, AttributeValue], ...] = ()
    delete: tuple[tuple[Path, AttributeValue], ...] = ()
    clauses: tuple[str, ...] = ()

    def targets(self) -> tuple[Path, ...]:
        """Every path the update writes or removes."""
        return (
            *(p for p, _ in self.set),
            *self.remove,
            *(p for p, _ in self.add),
            *(p for p, _ in self.delete),
        )


@dataclass
class Used:
    """The placeholders an expression used (DynamoDB refuses unused ones)."""

    names: set[str] = field(default_factory=set)
    values: set[str] = field(default_factory=set)


# ---- The parser ----------------------------------------------------------------------------


class Parser:
    def __init__(
        self,
        text: str,
        *,
        what: str,
        names: Mapping[str, str] | None,
        values: Mapping[str, AttributeValue] | None,
        used: Used,
    ) -> None:
        if not text.strip():
            raise ExpressionError(f"Invalid {what}: The expression can not be empty;")
        self.tokens = tokens(text)
        self.at = 0
        self.what = what
        self.names = names or {}
        self.values = values or {}
        self.used = used

    # -- helpers
    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.at + ahead, len(self.tokens) - 1)]

    def next(self) -> Token:
        token = self.peek()
        self.at += 1
        return token

    def keyword(self, token: Token) -> str | None:
        upper = token.text.upper()
        return upper if token.kind == "word" and upper in _KEYWORDS else None

    def accept_op(self, op: str) -> bool:
        if self.peek().kind == "op" and self.peek().text == op:
            self.at += 1
            return True
        return False

    def expect_op(self, op: str) -> None:
        if not self.accept_op(op):
            self.fail(f"expected {op!r}")

    def fail(self, why: str) -> None:
        token = self.peek()
        near = token.text or "end of expression"
        raise ExpressionError(f"Invalid {self.what}: Syntax error; {why}, near: {near!r}")

    def end(self) -> None:
        if self.peek().kind != "end":
            self.fail("unexpected token")

    # -- operands
    def path(self) -> Path:
        parts: list[PathPart] = [self.element()]
        while True:
            if self.accept_op("."):
                parts.append(self.element())
            elif self.accept_op("["):
                token = self.next()
                if token.kind != "number":
                    self.at -= 1
                    self.fail("a list index is a number")
                parts.append(int(token.text))
                self.expect_op("]")
            else:
                return Path(tuple(parts))

    def element(self) -> str:
        token = self.next()
        if token.kind == "name":
            if token.text not in self.names:
                raise ExpressionError(
                    f"Invalid {self.what}: An expression attribute name used in the document "
                    f"path is not defined; attribute name: {token.text}"
                )
            self.used.names.add(token.text)
            return self.names[token.text]
        if token.kind == "word" and self.keyword(token) is None:
            if token.text.upper() in RESERVED_WORDS:
                raise ExpressionError(
                    f"Invalid {self.what}: Attribute name is a reserved keyword; reserved "
                    f"keyword: {token.text}"
                )
            return token.text
        self.at -= 1
        self.fail("expected an attribute name")
        raise AssertionError  # unreachable: fail raises

    def value(self) -> Literal_:
        token = self.next()
        if token.kind != "value":
            self.at -= 1
            self.fail("expected an expression attribute value")
        if token.text not in self.values:
            raise ExpressionError(
                f"Invalid {self.what}: An expression attribute value used in expression is not "
                f"defined; attribute value: {token.text}"
            )
        self.used.values.add(token.text)
        return Literal_(self.values[token.text])

    def operand(self, functions: frozenset[str]) -> Operand:
        token = self.peek()
        if token.kind == "value":
            return self.value()
        if token.kind == "word" and self.peek(1).text == "(" and self.peek(1).kind == "op":
            if token.text not in functions:
                self.fail(f"{token.text} is not a function valid here")
            self.at += 2
            args: list[Operand] = [self.operand(functions)]
            while self.accept_op(","):
                args.append(self.operand(functions))
            self.expect_op(")")
            call = Call(token.text, tuple(args))
            self.check_call(call)
            return call
        return self.path()

    def check_call(self, call: Call) -> None:
        arity = {
            "if_not_exists": 2,
            "list_append": 2,
            "size": 1,
            "attribute_exists": 1,
            "attribute_not_exists": 1,
            "attribute_type": 2,
            "begins_with": 2,
            "contains": 2,
        }[call.function]
        if len(call.args) != arity:
            raise ExpressionError(
                f"Invalid {self.what}: Incorrect number of operands for operator or function; "
                f"operator or function: {call.function}, number of operands: {len(call.args)}"
            )
        first_is_path = call.function not in ("list_append",)
        if first_is_path and not isinstance(call.args[0], Path):
            raise ExpressionError(
                f"Invalid {self.what}: Operator or function requires a document path; "
                f"operator or function: {call.function}"
            )
        if call.function == "attribute_type" and not isinstance(call.args[1], Literal_):
            raise ExpressionError(
                f"Invalid {self.what}: attribute_type takes an expression attribute value"
            )

    # -- update expressions
    def update(self) -> Update:
        clauses: dict[str, list[object]] = {}
        while self.peek().kind != "end":
            token = self.next()
            clause = self.keyword(token)
            if clause not in ("SET", "REMOVE", "ADD", "DELETE"):
                self.at -= 1
                self.fail("expected SET, REMOVE, ADD or DELETE")
            assert clause is not None
            if clause in clauses:
                raise ExpressionError(
                    f'Invalid {self.what}: The "{clause}" section can only be used once in an '
                    "update expression;"
                )
            actions = clauses[clause] = []
            while True:
                actions.append(self.action(clause))
                if not self.accept_op(","):
                    break
        return Update(
            set=tuple(clauses.get("SET", ())),  # type: ignore[arg-type]
            remove=tuple(clauses.get("REMOVE", ())),  # type: ignore[arg-type]
            add=tuple(clauses.get("ADD", ())),  # type: ignore[arg-type]
            delete=tuple(clauses.get("DELETE", ())),  # type: ignore[arg-type]
            clauses=tuple(clauses),
        )

    def action(self, clause: str) -> object:
        target = self.path()
        if clause == "REMOVE":
            return target
        if clause in ("ADD", "DELETE"):
            return (target, self.value().value)
        self.expect_op("=")
        left = self.operand(UPDATE_FUNCTIONS)
        token = self.peek()
        if token.kind == "op" and token.text in ("+", "-"):
            self.at += 1
            right = self.operand(UPDATE_FUNCTIONS)
            return (target, Arithmetic(token.text, left, right))  # type: ignore[arg-type]
        return (target, left)

    # -- condition expressions
    def condition(self) -> Condition:
        left = self.conjunction()
        while self.keyword(self.peek()) == "OR":
            self.at += 1
            left = Or(left, self.conjunction())
        return left

    def conjunction(self) -> Condition:
        left = self.negation()
        while self.keyword(self.peek()) == "AND":
            self.at += 1
            left = And(left, self.negation())
        return left

    def negation(self) -> Condition:
        if self.keyword(self.peek()) == "NOT":
            self.at += 1
            return Not(self.negation())
        return self.primary()

    def primary(self) -> Condition:
        if self.accept_op("("):
            inner = self.condition()
            self.expect_op(")")
            return inner
        functions = CONDITION_FUNCTIONS | {"size"}
        subject = self.operand(functions)
        if isinstance(subject, Call) and subject.function in CONDITION_FUNCTIONS:
            return subject
        token = self.peek()
        if token.kind == "op" and token.text in _COMPARATORS:
            self.at += 1
            return Compare(token.text, subject, self.comparable(functions))
        keyword = self.keyword(token)
        if keyword == "BETWEEN":
            self.at += 1
            low = self.comparable(functions)
            if self.keyword(self.next()) != "AND":
                self.at -= 1
                self.fail("BETWEEN takes AND")
            return Between(subject, low, self.comparable(functions))
        if keyword == "IN":
            self.at += 1
            self.expect_op("(")
            options = [self.comparable(functions)]
            while self.accept_op(","):
                options.append(self.comparable(functions))
            self.expect_op(")")
            return In(subject, tuple(options))
        self.fail("expected a comparator, BETWEEN, IN or a function")
        raise AssertionError  # unreachable

    def comparable(self, functions: frozenset[str]) -> Operand:
        operand = self.operand(functions)
        if isinstance(operand, Call) and operand.function in CONDITION_FUNCTIONS:
            raise ExpressionError(
                f"Invalid {self.what}: The function is not allowed to be used this way in an "
                f"expression; function: {operand.function}"
            )
        return operand

    # -- projection expressions
    def projection(self) -> tuple[Path, ...]:
        paths = [self.path()]
        while self.accept_op(","):
            paths.append(self.path())
        return tuple(paths)


def checked_values(values: Mapping[str, AttributeValue] | None) -> None:
    """ExpressionAttributeValues are attribute values DynamoDB accepts (no empty set, numbers
    as strings...)."""
    if values is None:
        return
    if not values:
        raise ExpressionError("ExpressionAttributeValues must not be empty")
    for name, value in values.items():
        try:
            canonical_bytes({name: value})
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise ExpressionError(
                f"ExpressionAttributeValues contains invalid value: {exc} for key {name}"
            ) from exc


def no_overlap(paths: tuple[Path, ...], *, what: str) -> None:
    for i, one in enumerate(paths):
        for two in paths[i + 1 :]:
            if one.overlaps(two):
                raise ExpressionError(
                    f"Invalid {what}: Two document paths overlap with each other; must remove "
                    f"or rewrite one of these paths; path one: {one}, path two: {two}"
                )
