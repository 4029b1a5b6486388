"""Field execution without per-field machinery for objects that are plain data.

graphql-core executes every field of every object on its own: it builds a resolve info,
calls strawberry's resolver wrapper, checks for awaitables and completes the value through
five type tests. For a page of a hundred evidence items that is a thousand fields, and most of
the time a heavy read takes. The objects on such pages are plain data already: the resolver
that loaded them checked the caller's role and party, and their fields only read attributes.

`PlainFieldsExecutionContext` completes such an object in one step: for each selection set it
compiles a plan (response key → attribute, leaf coercion or a nested plan) into one Python
function, made with exec, that reads the selected attributes and builds the answer's dict; it
applies that function to every object of the selection. A plan depends only on the schema and
the query's text, so for a query without directives (whose selections never depend on the
variables) it is compiled once and kept with the parsed document for every later request. A field whose resolver takes arguments,
`info`, runs field extensions or is async is not plain; an object with one such field selected
is executed field by field as before. Anything out of the ordinary while applying a plan (a
null where the schema says non-null, a value the scalar refuses, an object of another type)
abandons the plan for that object and executes it the standard way, so errors, their paths
and the answer are exactly what graphql-core gives.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from graphql import (
    FragmentSpreadNode, GraphQLEnumType, GraphQLID, GraphQLObjectType, GraphQLString, is_leaf_type,
    is_list_type, is_non_null_type, is_object_type,
)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


class _NotPlain(Exception):
    """This object (or one inside it) cannot be completed by a plan: execute it field by field."""


_NOT_PLAIN = _NotPlain()
_NO_PLAN = object()  # a selection set with a field that is not plain


def _reads_only_self(field: Any) -> tuple[str | None, Callable[[Any], Any] | None] | None:
    """How a strawberry field that is a pure read of its object reads it: (attribute name, None) for a
    plain attribute, (None, function of the object) otherwise; None if the field is not such a read.

    A basic field (no resolver, no extensions) reads the attribute; a resolver that takes only
    `self` (no arguments, no info, not async, no field extensions) is called with the object."""
    if field is None or field.extensions:
        return None
    resolver = field.base_resolver
    if resolver is None:
        name, read = field.python_name, field.default_resolver
        if read is getattr and name.isidentifier():
            return name, None
        return None, lambda source: read(source, name)
    if resolver.is_async or field.arguments:
        return None
    func = resolver.wrapped_func
    if not inspect.isfunction(func) or list(inspect.signature(func).parameters) != ["self"]:
        return None
    return None, func


# plans kept across requests: (id of the type, ids of the selection's field nodes) → (the type and the
# nodes, kept alive so their ids are never reused, and the plan); the nodes belong to a parsed document
# that strawberry's ParserCache hands to every request with the same query text
_SHARED_PLANS: dict[tuple, tuple[Any, Any]] = {}
_STATIC_OPERATIONS: dict[int, tuple[Any, bool]] = {}
SHARED_PLANS_MAX = 4096  # a bound on memory: past it the cache starts again empty


def _has_directives(selection_set: Any, fragments: dict, seen: set[str]) -> bool:
    """Whether any selection under `selection_set` (fragments followed) has a directive or fragment variables:
    then which fields are collected depends on the request's variables."""
    if selection_set is None:
        return False
    for node in selection_set.selections:
        if node.directives:
            return True
        if isinstance(node, FragmentSpreadNode):
            if node.arguments:
                return True
            name = node.name.value
            if name in seen:
                continue
            seen.add(name)
            details = fragments.get(name)
            if details is None:
                return True
            definition = details.definition
            if definition.directives or definition.variable_definitions:
                return True
            if _has_directives(definition.selection_set, fragments, seen):
                return True
        elif _has_directives(node.selection_set, fragments, seen):
            return True
    return False


class PlainFieldsExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's execution, with plain-data objects completed by a compiled plan (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (type, selection) → (the selection, kept so its id is not reused during this execution; its plan)
        self._plans: dict[tuple[int, int], tuple[Any, Any]] = {}
        self._static: bool | None = None  # whether this operation's plans may be shared across requests

    def complete_object_value(self, return_type, field_details_list, info, path, result, position_context):
        plan = self._plan(return_type, field_details_list)
        if plan is not _NO_PLAN:
            try:
                return plan(result, info)
            except Exception:  # noqa: BLE001 - the standard path reports it, at the right field
                pass
        return super().complete_object_value(return_type, field_details_list, info, path, result, position_context)

    def _plan(self, return_type: GraphQLObjectType, field_details_list) -> Any:
        key = (id(return_type), id(field_details_list))
        found = self._plans.get(key)
        if found is not None:
            return found[1]
        if self._shareable():
            nodes = tuple(d.node for d in field_details_list)
            shared_key = (id(return_type), *map(id, nodes))
            shared = _SHARED_PLANS.get(shared_key)
            if shared is None:
                if len(_SHARED_PLANS) >= SHARED_PLANS_MAX:
                    _SHARED_PLANS.clear()
                shared = _SHARED_PLANS[shared_key] = ((return_type, nodes),
                                                      self._compile(return_type, field_details_list))
            plan = shared[1]
        else:
            plan = self._compile(return_type, field_details_list)
        self._plans[key] = (field_details_list, plan)
        return plan

    def _shareable(self) -> bool:
        """Whether the operation's selections are the same whatever the variables (no directives, no
        fragment variables), so a plan compiled for one request serves every request of the document."""
        if self._static is None:
            operation = self.operation
            found = _STATIC_OPERATIONS.get(id(operation))
            if found is None or found[0] is not operation:
                if len(_STATIC_OPERATIONS) >= SHARED_PLANS_MAX:
                    _STATIC_OPERATIONS.clear()
                found = _STATIC_OPERATIONS[id(operation)] = (
                    operation, not operation.directives and not _has_directives(operation.selection_set,
                                                                                self.fragments, set()))
            self._static = found[1]
        return self._static

    def _compile(self, return_type: GraphQLObjectType, field_details_list) -> Any:
        definition = (return_type.extensions or {}).get("strawberry-definition")
        if definition is None:
            return _NO_PLAN
        grouped, defer_usages, _forbidden = self.collect_subfields(return_type, field_details_list)
        if defer_usages:
            return _NO_PLAN
        code = _PlanCode()
        for response_key, details in grouped.items():
            if any(d.defer_usage is not None or d.fragment_variable_values for d in details):
                return _NO_PLAN
            name = details[0].node.name.value
            if name == "__typename":
                code.constant(response_key, return_type.name)
                continue
            field_def = return_type.fields.get(name)
            if field_def is None or details[0].node.arguments:
                return _NO_PLAN
            read = _reads_only_self((field_def.extensions or {}).get("strawberry-definition"))
            if read is None:
                return _NO_PLAN
            required = is_non_null_type(field_def.type)
            type_ = field_def.type.of_type if required else field_def.type
            completion = self._completion(type_, details)
            if completion is None:
                return _NO_PLAN
            code.field(response_key, read, required, completion)
        return code.build(return_type.is_type_of, definition.origin)

    def _completion(self, type_: Any, details) -> tuple | None:
        """How to complete a non-null value of `type_` (a tuple _PlanCode understands); None if not by a plan."""
        if is_non_null_type(type_):
            inner = self._completion(type_.of_type, details)
            return None if inner is None else ("non_null", inner)
        if is_list_type(type_):
            item_type = type_.of_type
            item_required = is_non_null_type(item_type)
            item = self._completion(item_type.of_type if item_required else item_type, details)
            return None if item is None else ("list", item, item_required)
        if is_leaf_type(type_):
            if type_ is GraphQLString or type_ is GraphQLID:
                return ("str", type_.coerce_output_value)  # a str is its own answer
            wrapped = getattr(type_, "wrapped_cls", None)
            if isinstance(type_, GraphQLEnumType) and isinstance(wrapped, type):
                try:  # strawberry's enums: each member's name, computed once
                    names = {member: type_.coerce_output_value(member) for member in wrapped}
                except Exception:  # noqa: BLE001 - then every value is coerced as it comes
                    names = None
                if names is not None:
                    return ("enum", type_.coerce_output_value, wrapped, names)
            return ("leaf", type_.coerce_output_value)
        if is_object_type(type_):
            plan = self._plan(type_, details)
            return None if plan is _NO_PLAN else ("object", plan)
        return None  # interfaces and unions: their runtime type is resolved field by field


class _PlanCode:
    """The source of one plan: a function of (source, info) that reads the selected fields and returns the dict.

    Each field is a few lines: read the attribute, None or the completed value; anything that
    graphql-core would answer differently (a null in a non-null field, a value the scalar
    refuses or coerces to null, a list that is not a list) raises _NotPlain instead."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"NOT_PLAIN": _NOT_PLAIN}
        self.entries: list[str] = []

    def _name(self, value: Any) -> str:
        name = f"n{len(self.names)}"
        self.names[name] = value
        return name

    def constant(self, response_key: str, value: Any) -> None:
        self.entries.append(f"{response_key!r}: {self._name(value)}")

    def field(self, response_key: str, read: tuple, required: bool, completion: tuple) -> None:
        attribute, function = read
        v = f"v{len(self.entries)}"
        source = f"source.{attribute}" if attribute is not None else f"{self._name(function)}(source)"
        self.lines.append(f"    {v} = {source}")
        self.lines.append(f"    if {v} is None:")
        self.lines.append("        raise NOT_PLAIN" if required else "        pass")
        self.lines.append("    else:")
        self._complete(v, completion, "        ")
        self.entries.append(f"{response_key!r}: {v}")

    def _complete(self, v: str, completion: tuple, indent: str) -> None:
        """Lines that replace the non-null value in `v` by its completed value (never None)."""
        kind = completion[0]
        add = self.lines.append
        if kind == "non_null":
            self._complete(v, completion[1], indent)  # a completed value is never None here
        elif kind == "str":
            add(f"{indent}if type({v}) is not str:")
            add(f"{indent}    {v} = {self._name(completion[1])}({v})")
            add(f"{indent}    if {v} is None:")
            add(f"{indent}        raise NOT_PLAIN")
        elif kind == "enum":
            _kind, coerce, wrapped, names = completion
            add(f"{indent}if type({v}) is {self._name(wrapped)}:")
            add(f"{indent}    {v} = {self._name(names)}[{v}]")
            add(f"{indent}else:")
            add(f"{indent}    {v} = {self._name(coerce)}({v})")
            add(f"{indent}    if {v} is None:")
            add(f"{indent}        raise NOT_PLAIN")
        elif kind == "leaf":
            add(f"{indent}{v} = {self._name(completion[1])}({v})")
            add(f"{indent}if {v} is None:")
            add(f"{indent}    raise NOT_PLAIN")
        elif kind == "object":
            add(f"{indent}{v} = {self._name(completion[1])}({v})")  # a plan returns a dict or raises
        elif kind == "list":
            add(f"{indent}{v} = {self._name(_list_completer(completion[1], completion[2]))}({v})")
        else:
            raise AssertionError(kind)

    def build(self, is_type_of: Any, own_class: type) -> Callable[..., dict]:
        lines = ["def apply(source, info=None):"]
        if is_type_of is not None:
            # an instance of exactly this class is of this type: no need to ask
            lines += [f"    if type(source) is not {self._name(own_class)} and not {self._name(is_type_of)}(source, info):",
                      "        raise NOT_PLAIN"]
        lines += self.lines
        lines.append("    return {" + ", ".join(self.entries) + "}")
        namespace = dict(self.names)
        exec(compile("\n".join(lines), "<plain fields plan>", "exec"), namespace)  # noqa: S102 - our own source
        return namespace["apply"]


def _list_completer(item: tuple, item_required: bool) -> Callable[[Any], list]:
    """The completion of a list whose items complete by `item` (see _PlanCode._complete)."""
    code = _PlanCode()
    code.lines.append("    out = []")
    code.lines.append("    append = out.append")
    code.lines.append("    for x in value:")
    code.lines.append("        if x is None:")
    code.lines.append("            raise NOT_PLAIN" if item_required else "            append(None)")
    code.lines.append("            continue")
    code._complete("x", item, "        ")
    code.lines.append("        append(x)")
    source = ["def complete_list(value):",
              # graphql-core's own test for a list: an iterable that is not a string or a mapping
              "    if type(value) is not list and (isinstance(value, (str, bytes, dict)) or not hasattr(value, '__iter__')):",
              "        raise NOT_PLAIN", *code.lines, "    return out"]
    namespace = dict(code.names)
    exec(compile("\n".join(source), "<plain fields list>", "exec"), namespace)  # noqa: S102 - our own source
    return namespace["complete_list"]
