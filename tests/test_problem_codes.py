"""docs/problems.md names every problem `code` the API can answer, and only those.

A problem's `type` is `https://docs.omnitill.dev/problems/<code>` (pos_gateway.problems), which
the catalogue answers as `docs/problems.md#<code>`: a code raised in the source and missing from
the catalogue is a link to nowhere, and an entry whose code is raised nowhere any more misleads.

The codes are read from the source (its AST), not from a list kept by hand: every construction
of a refusal (`pos_kit.errors.DomainError` and its subclasses in the services, the gateway's
`Problem`, the gateway's own `staff.Refused` and `registers.Refused`, whose reason is the code),
with the code argument followed where that is simple: a literal, a constant of the module or one
it imports, an enum member, a local variable, a branch of `x if c else y` / `x or y`, a dict's
values, and a parameter of the enclosing function followed to that function's callers (so a
helper such as `taken(code, ...)` and a subclass passing its `code` on are read at their call
sites). What it cannot follow fails the test, naming the place: teach the scanner, or list the
pattern in DYNAMIC below.

Pure: it reads files and starts no server (run by `make unit`).
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from pos_gateway.problems import public_code

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "docs" / "problems.md"
SOURCES = [ROOT / "libs" / "kit" / "src", *sorted((ROOT / "services").glob("*/src")),
           ROOT / "gateway" / "src"]  # fmt: skip

# The classes whose construction names a code, and the parameter that does. Every subclass
# (found by its bases) is followed through its `super().__init__(...)`.
ROOTS = {
    "pos_kit.errors.DomainError": "code",
    "pos_gateway.problems.Problem": "code",
    "pos_gateway.staff.Refused": "reason",
    "pos_gateway.registers.Refused": "reason",
}

# Codes built at run time from a state's name (an f-string), which no scan can read: each
# pattern (`{}` where a value goes) with every code it can make. A new f-string code fails the
# test until it is listed here, with what the value can be (read where it is raised).
DYNAMIC = {
    # customer service: a loyalty hold that is no longer `held` (loyalty.HELD, FINALIZED,
    # RELEASED), told to a commit, release or re-hold.
    "hold_{}": {"hold_finalized", "hold_released"},
    # customer service: the unique field a customer write collides on (KeyTaken.field, from
    # adapters.repository._KEY_FIELDS: email, external_id).
    "{}_taken": {"email_taken", "external_id_taken"},
    # payment service: a capture of a payment that is `voided` or `failed`, or one whose
    # uncaptured rest was voided (then `captured`).
    "payment_{}": {"payment_voided", "payment_failed", "payment_captured"},
    # promotion service: an order's coupon reservations already `redeemed` or `released`.
    "coupons_already_{}": {"coupons_already_redeemed", "coupons_already_released"},
    # order service: a downstream service that did not answer (adapters.remote._downstream).
    "{}_unavailable": {
        "inventory_unavailable",
        "promotion_unavailable",
        "customer_unavailable",
        "payment_unavailable",
    },
}

# Attributes that carry a code made elsewhere (an error caught and passed on, a refusal stored
# and told again, a cancelled order's reason, which is the code that cancelled it): the code is
# found where it was first raised, so these add nothing.
PASSED_ON = {"code", "reason", "refusal", "cancel_reason"}

# Service codes the gateway never shows under their own name (`public_code`).
HIDDEN = {"invalid_argument"}

ENTRY = re.compile(r"^### `([a-z][a-z0-9_]*)`\s*$", re.MULTILINE)


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    defs: dict[str, ast.AST] = field(default_factory=dict)  # top-level classes, functions
    consts: dict[str, ast.expr] = field(default_factory=dict)  # top-level `NAME = value`
    imports: dict[str, str] = field(default_factory=dict)  # local name -> qualified name


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _load() -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for src in SOURCES:
        for path in sorted(src.rglob("*.py")):
            if path.name.endswith(("_pb2.py", "_pb2_grpc.py")) or "migrations" in path.parts:
                continue
            name = _module_name(path, src)
            mod = Module(name, path, ast.parse(path.read_text(), str(path)))
            for node in mod.tree.body:
                if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                    mod.defs[node.name] = node
                elif isinstance(node, ast.Assign):
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            mod.consts[target.id] = node.value
                elif (
                    isinstance(node, ast.AnnAssign)
                    and node.value is not None
                    and isinstance(node.target, ast.Name)
                ):
                    mod.consts[node.target.id] = node.value
            for each in ast.walk(mod.tree):
                if isinstance(each, ast.ImportFrom) and each.module and each.level == 0:
                    for alias in each.names:
                        mod.imports[alias.asname or alias.name] = f"{each.module}.{alias.name}"
                elif isinstance(each, ast.Import):
                    for alias in each.names:
                        if alias.asname:
                            mod.imports[alias.asname] = alias.name
            modules[name] = mod
    return modules


@dataclass
class Found:
    codes: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    unresolved: list[str] = field(default_factory=list)


class Scanner:
    def __init__(self) -> None:
        self.modules = _load()
        self.parents: dict[ast.AST, ast.AST] = {}
        # Every call, by the last part of the name it calls (`f` of `f()`, `x.f()`; `__init__`
        # of `super().__init__()`).
        self.calls: dict[str, list[tuple[Module, ast.Call]]] = defaultdict(list)
        for mod in self.modules.values():
            for node in ast.walk(mod.tree):
                for child in ast.iter_child_nodes(node):
                    self.parents[child] = node
                if isinstance(node, ast.Call):
                    func = node.func
                    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                    self.calls[name].append((mod, node))
        # Every class, by qualified name, and its bases (qualified where they resolve).
        self.classes: dict[str, tuple[Module, ast.ClassDef]] = {}
        self.bases: dict[str, list[str]] = {}
        for mod in self.modules.values():
            for node in mod.tree.body:
                if isinstance(node, ast.ClassDef):
                    qual = f"{mod.name}.{node.name}"
                    self.classes[qual] = (mod, node)
                    self.bases[qual] = [b for b in map(lambda e: self.ref(mod, e), node.bases) if b]
        self.errors = self._error_classes()
        self.found = Found()

    # -- names --------------------------------------------------------------------------
    def qualify(self, qual: str) -> str:
        """A qualified name followed through re-exports (`pkg.X` imported into `pkg`)."""
        for _ in range(5):
            mod_name, _, name = qual.rpartition(".")
            mod = self.modules.get(mod_name)
            if mod is None or name in mod.defs or name in mod.consts or name not in mod.imports:
                return qual
            qual = mod.imports[name]
        return qual

    def ref(self, mod: Module, expr: ast.expr) -> str | None:
        """The qualified name an expression names (a class, function or constant), if any."""
        if isinstance(expr, ast.Name):
            if expr.id in mod.defs or expr.id in mod.consts:
                return f"{mod.name}.{expr.id}"
            if expr.id in mod.imports:
                return self.qualify(mod.imports[expr.id])
            return None
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
            base = expr.value.id
            target = mod.imports.get(base)
            if target is not None and target in self.modules:
                return self.qualify(f"{target}.{expr.attr}")
            owner = self.ref(mod, expr.value)
            if owner in self.classes:
                return f"{owner}.{expr.attr}"
        return None

    def _error_classes(self) -> set[str]:
        errors = set(ROOTS)
        grew = True
        while grew:
            grew = False
            for qual, bases in self.bases.items():
                if qual not in errors and any(b in errors for b in bases):
                    errors.add(qual)
                    grew = True
        return errors

    def init_of(self, qual: str) -> ast.FunctionDef | None:
        _, node = self.classes[qual]
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                return item
        return None

    def signature_class(self, qual: str) -> str | None:
        """The class whose `__init__` a construction of `qual` runs (itself or an ancestor)."""
        seen = 0
        while qual not in ROOTS and self.init_of(qual) is None and seen < 10:
            bases = [b for b in self.bases.get(qual, []) if b in self.errors]
            if not bases:
                return None
            qual, seen = bases[0], seen + 1
        return qual

    def root_param(self, qual: str) -> tuple[int, str, ast.expr | None]:
        """A root's code parameter: its position (self excluded), name and default."""
        name = ROOTS[qual]
        init = self.init_of(qual)
        if init is not None:
            args = init.args.args[1:]
            defaults = [None] * (len(args) - len(init.args.defaults)) + init.args.defaults
            for i, arg in enumerate(args):
                if arg.arg == name:
                    return i, name, defaults[i]
        else:  # a dataclass: its fields in order
            _, node = self.classes[qual]
            fields = [s for s in node.body if isinstance(s, ast.AnnAssign)]
            for i, f in enumerate(fields):
                if isinstance(f.target, ast.Name) and f.target.id == name:
                    return i, name, f.value
        raise AssertionError(f"{qual} has no parameter {name!r}")

    # -- where codes are made -----------------------------------------------------------
    def enclosing(self, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                return node
        return None

    def enclosing_class(self, node: ast.AST) -> ast.ClassDef | None:
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, ast.ClassDef):
                return node
        return None

    def constructs(self, mod: Module, call: ast.Call) -> str | None:
        """The error class a call constructs: a class named, or `super().__init__` inside
        one (then its first error base)."""
        func = call.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "__init__"
            and isinstance(func.value, ast.Call)
            and isinstance(func.value.func, ast.Name)
            and func.value.func.id == "super"
        ):
            cls = self.enclosing_class(call)
            own = f"{mod.name}.{cls.name}" if cls is not None else ""
            bases = [b for b in self.bases.get(own, []) if b in self.errors]
            return bases[0] if bases else None
        named = self.ref(mod, func)
        return named if named in self.errors else None

    def sites(self) -> Iterator[tuple[Module, ast.Call, str]]:
        names = {q.rpartition(".")[2] for q in self.errors} | {"__init__"}
        for name in sorted(names):
            for mod, node in self.calls.get(name, []):
                made = self.constructs(mod, node)
                if made is not None:
                    yield mod, node, made

    def scan(self) -> Found:
        for mod, call, made in self.sites():
            sig = self.signature_class(made)
            if sig not in ROOTS:
                continue  # its own __init__ names the code: read at its super().__init__
            index, name, default = self.root_param(sig)
            arg = self.argument(call, index, name)
            where = f"{mod.path.relative_to(ROOT)}:{call.lineno}"
            if arg is None:
                if default is None:
                    self.found.unresolved.append(f"{where}: no code given and none by default")
                    continue
                root_mod, _ = self.classes[sig]
                self.resolve(root_mod, default, default, where, 0)
            else:
                self.resolve(mod, arg, call, where, 0)
        return self.found

    @staticmethod
    def argument(call: ast.Call, index: int, name: str) -> ast.expr | None:
        for kw in call.keywords:
            if kw.arg == name:
                return kw.value
        positional = call.args
        if any(isinstance(a, ast.Starred) for a in positional[: index + 1]):
            return None
        return positional[index] if index < len(positional) else None

    # -- reading a code expression ------------------------------------------------------
    def add(self, code: str, where: str) -> None:
        self.found.codes[public_code(code)].add(where)

    def resolve(self, mod: Module, expr: ast.expr, at: ast.AST, where: str, depth: int) -> None:
        if depth > 8:
            self.found.unresolved.append(f"{where}: followed too far: {ast.unparse(expr)}")
            return
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            self.add(expr.value, where)
        elif isinstance(expr, ast.Constant) and expr.value is None:
            pass  # `code or error`: no code given, the other operand is the code
        elif isinstance(expr, ast.JoinedStr):
            pattern = "".join(
                str(v.value) if isinstance(v, ast.Constant) else "{}" for v in expr.values
            )
            if pattern not in DYNAMIC:
                self.found.unresolved.append(
                    f"{where}: a code built at run time ({ast.unparse(expr)}): list {pattern!r}"
                    " in DYNAMIC with every code it can make"
                )
            for code in DYNAMIC.get(pattern, ()):
                self.add(code, where)
        elif isinstance(expr, ast.IfExp):
            self.resolve(mod, expr.body, at, where, depth + 1)
            self.resolve(mod, expr.orelse, at, where, depth + 1)
        elif isinstance(expr, ast.BoolOp) and (params := self.parameters(at, expr.values)):
            func = self.enclosing(at)
            assert func is not None
            self.resolve_parameters(mod, func, params, where, depth)
        elif isinstance(expr, ast.BoolOp | ast.Dict):
            for value in expr.values:
                self.resolve(mod, value, at, where, depth + 1)
        elif isinstance(expr, ast.Subscript):
            key = expr.slice
            if isinstance(key, ast.Constant) and key.value in PASSED_ON:
                return  # `stored["code"]`: a refusal kept and told again, as `.code` is
            self.resolve(mod, expr.value, at, where, depth + 1)
        elif isinstance(expr, ast.Call):
            self.resolve_call(mod, expr, at, where, depth)
        elif isinstance(expr, ast.Name):
            self.resolve_name(mod, expr, at, where, depth)
        elif isinstance(expr, ast.Attribute):
            self.resolve_attribute(mod, expr, at, where, depth)
        else:
            self.found.unresolved.append(f"{where}: cannot read {ast.unparse(expr)}")

    def resolve_call(
        self, mod: Module, call: ast.Call, at: ast.AST, where: str, depth: int
    ) -> None:
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr == "get" and call.args:
            # `{404: "a", 405: "b"}.get(status, "c")`, or a mapping named so.
            self.resolve(mod, func.value, at, where, depth + 1)
            if len(call.args) > 1:
                self.resolve(mod, call.args[1], at, where, depth + 1)
        elif isinstance(func, ast.Name) and func.id == "public_code":
            self.resolve(mod, call.args[0], at, where, depth + 1)
        elif (
            isinstance(func, ast.Attribute)
            and func.attr == "lower"
            and isinstance(func.value, ast.Attribute)
            and func.value.attr == "name"
        ):
            # A gRPC status's own name, for an answer that came with no code of ours (the
            # gRPC runtime's own refusals): not one of our codes; the catalogue says so.
            pass
        else:
            self.found.unresolved.append(f"{where}: cannot read the call {ast.unparse(call)}")

    def resolve_name(
        self, mod: Module, name: ast.Name, at: ast.AST, where: str, depth: int
    ) -> None:
        func = self.enclosing(at)
        if func is not None:
            # `code = public_code(code)` reads a value another assignment gave: not followed.
            values = [
                v
                for v in self.assigned(func, name.id)
                if not any(isinstance(n, ast.Name) and n.id == name.id for n in ast.walk(v))
            ]
            if values:
                for value in values:
                    self.resolve(mod, value, value, where, depth + 1)
                return
            every = (*func.args.posonlyargs, *func.args.args, *func.args.kwonlyargs)
            params = [a.arg for a in every]
            if name.id in params:
                self.resolve_parameters(mod, func, [name.id], where, depth)
                return
        if name.id in mod.consts:
            value = mod.consts[name.id]
            self.resolve(mod, value, value, where, depth + 1)
            return
        qual = self.ref(mod, name)
        if qual is not None:
            target_mod, _, const = qual.rpartition(".")
            target = self.modules.get(target_mod)
            if target is not None and const in target.consts:
                value = target.consts[const]
                self.resolve(target, value, value, where, depth + 1)
                return
        self.found.unresolved.append(f"{where}: cannot find what {name.id!r} holds")

    @staticmethod
    def assigned(func: ast.AST, name: str) -> Iterator[ast.expr]:
        for node in ast.walk(func):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id == name:
                        yield node.value
                    elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                        for t, v in zip(target.elts, node.value.elts, strict=False):
                            if isinstance(t, ast.Name) and t.id == name:
                                yield v
            elif (
                isinstance(node, ast.AnnAssign | ast.AugAssign)
                and isinstance(node.target, ast.Name)
                and node.target.id == name
                and node.value
            ):
                yield node.value

    def resolve_attribute(
        self, mod: Module, expr: ast.Attribute, at: ast.AST, where: str, depth: int
    ) -> None:
        qual = self.ref(mod, expr)
        if qual is not None:
            owner, _, attr = qual.rpartition(".")
            if owner in self.classes:  # `Refusal.EXPIRED`: a class (an enum's) attribute
                cls_mod, cls = self.classes[owner]
                for value in self.class_values(cls, attr):
                    self.resolve(cls_mod, value, value, where, depth + 1)
                return
            target = self.modules.get(owner)
            if target is not None and attr in target.consts:
                value = target.consts[attr]
                self.resolve(target, value, value, where, depth + 1)
                return
        if expr.attr == "value" and isinstance(expr.value, ast.Name):
            # `refusal.value` of a parameter annotated with an enum: any of its members.
            enum = self.annotated_class(mod, expr.value, at)
            if enum is not None:
                cls_mod, cls = self.classes[enum]
                for value in self.class_values(cls, None):
                    self.resolve(cls_mod, value, value, where, depth + 1)
                return
        if expr.attr in PASSED_ON:
            return
        self.found.unresolved.append(f"{where}: cannot read {ast.unparse(expr)}")

    @staticmethod
    def class_values(cls: ast.ClassDef, attr: str | None) -> Iterator[ast.expr]:
        for item in cls.body:
            if isinstance(item, ast.Assign) and isinstance(item.value, ast.Constant):
                for target in item.targets:
                    if isinstance(target, ast.Name) and (attr is None or target.id == attr):
                        yield item.value

    def annotated_class(self, mod: Module, name: ast.Name, at: ast.AST) -> str | None:
        func = self.enclosing(at)
        if func is None:
            return None
        for arg in (*func.args.args, *func.args.kwonlyargs):
            if arg.arg == name.id and arg.annotation is not None:
                qual = self.ref(mod, arg.annotation)
                return qual if qual in self.classes else None
        return None

    def parameters(self, at: ast.AST, names: list[ast.expr]) -> list[str] | None:
        """The names, if each is a parameter of the function around `at` that it does not
        assign itself."""
        func = self.enclosing(at)
        if func is None or not all(isinstance(n, ast.Name) for n in names):
            return None
        params = {a.arg for a in (*func.args.posonlyargs, *func.args.args, *func.args.kwonlyargs)}
        ids = [n.id for n in names if isinstance(n, ast.Name)]
        if all(i in params and not list(self.assigned(func, i)) for i in ids):
            return ids
        return None

    def resolve_parameters(
        self,
        mod: Module,
        func: ast.FunctionDef | ast.AsyncFunctionDef,
        params: list[str],
        where: str,
        depth: int,
    ) -> None:
        """A code a function was given, read at every call of the function: `params` holds
        one parameter, or those of `a or b` (at each call, the first one that call gives;
        `_oauth_error(..., code=None)` is the `error` it gives)."""
        args = [*func.args.posonlyargs, *func.args.args]
        names = [a.arg for a in args]
        cls = self.enclosing_class(func)
        method = (
            cls is not None and self.enclosing(func) is None and names[:1] in (["self"], ["cls"])
        )
        if method:
            names = names[1:]
        with_default = [a.arg for a in args][len(args) - len(func.args.defaults) :]
        defaults = dict(zip(with_default, func.args.defaults, strict=True))
        for kw, default in zip(func.args.kwonlyargs, func.args.kw_defaults, strict=True):
            if default is not None:
                defaults[kw.arg] = default
        calls = list(self.callers(mod, func, cls if method else None))
        if not calls:
            self.found.unresolved.append(
                f"{where}: the code is {func.name}()'s parameter {params[0]!r}, and nothing "
                "calls it"
            )
        for caller_mod, call in calls:
            at = f"{caller_mod.path.relative_to(ROOT)}:{call.lineno}"
            for param in params:
                index = names.index(param) if param in names else -1
                arg = self.argument(call, index, param) if index >= 0 else None
                if arg is None:
                    arg = next((k.value for k in call.keywords if k.arg == param), None)
                if arg is None and param in defaults:
                    arg, caller_mod_of_arg, node = defaults[param], mod, defaults[param]
                elif arg is None:
                    self.found.unresolved.append(f"{at}: cannot find the {param!r} it passes")
                    break
                else:
                    caller_mod_of_arg, node = caller_mod, call
                if isinstance(arg, ast.Constant) and arg.value is None:
                    continue  # this call gives none: the next operand is the code
                self.resolve(caller_mod_of_arg, arg, node, at, depth + 1)
                if not (
                    isinstance(arg, ast.IfExp)
                    and any(
                        isinstance(b, ast.Constant) and b.value is None
                        for b in (arg.body, arg.orelse)
                    )
                ):
                    break

    def callers(
        self, mod: Module, func: ast.FunctionDef | ast.AsyncFunctionDef, cls: ast.ClassDef | None
    ) -> Iterator[tuple[Module, ast.Call]]:
        if cls is not None and func.name == "__init__":
            qual = f"{mod.name}.{cls.name}"
            for m, node in [*self.calls.get(cls.name, []), *self.calls.get("__init__", [])]:
                if self.ref(m, node.func) == qual or self.constructs(m, node) == qual:
                    yield m, node
        elif cls is not None:  # a method: called as `x.name(...)`
            for m, node in self.calls.get(func.name, []):
                if isinstance(node.func, ast.Attribute):
                    yield m, node
        else:
            qual = f"{mod.name}.{func.name}"
            for m, node in self.calls.get(func.name, []):
                if self.ref(m, node.func) == qual or (
                    m is mod and isinstance(node.func, ast.Name) and node.func.id == func.name
                ):
                    yield m, node


@cache
def raised() -> Found:
    found = Scanner().scan()
    for code in HIDDEN:
        found.codes.pop(code, None)
    return found


def documented() -> list[str]:
    return ENTRY.findall(CATALOGUE.read_text())


def test_the_scanner_reads_every_code_it_meets() -> None:
    found = raised()
    assert not found.unresolved, "codes the scan could not read:\n  " + "\n  ".join(
        sorted(set(found.unresolved))
    )


def test_the_scanner_finds_codes_made_in_every_way() -> None:
    # One of each way a code is made, so a scanner that stopped following one fails here,
    # not by quietly finding fewer codes.
    codes = raised().codes
    for code in (
        "invalid_request",  # DomainError's default, and InvalidArgument's via public_code
        "resource_missing",  # NotFound's super().__init__
        "insufficient_stock",  # a service's own Conflict subclass
        "card_number_not_allowed",  # a constant imported from pos_kit.text
        "coupon_expired",  # an enum member passed as `refusal.value`
        "route_not_found",  # a dict's value read with .get()
        "service_timeout",  # likewise, inline
        "staff_deactivated",  # the gateway's staff.Refused
        "pairing_code_invalid",  # the gateway's registers.Refused
        "rate_limited",
        "unsupported_media_type",
    ):
        assert code in codes, code


def test_every_code_raised_is_in_the_catalogue() -> None:
    found = raised().codes
    missing = sorted(set(found) - set(documented()))
    assert not missing, (
        "problem codes with no entry in docs/problems.md (add `### `code`` with its status, "
        "meaning and what the client should do):\n  "
        + "\n  ".join(f"{c} (raised at {sorted(found[c])[0]})" for c in missing)
    )


def test_every_code_in_the_catalogue_is_still_raised() -> None:
    gone = sorted(set(documented()) - set(raised().codes))
    assert not gone, "docs/problems.md documents codes nothing raises any more:\n  " + (
        "\n  ".join(gone)
    )


def test_each_code_has_one_entry() -> None:
    entries = documented()
    twice = sorted({c for c in entries if entries.count(c) > 1})
    assert not twice, f"documented more than once: {twice}"
