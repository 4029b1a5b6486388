"""Field execution without per-field machinery for objects that are plain data.

graphql-core executes every field of every object on its own: it builds a resolve info,
calls strawberry's resolver wrapper, checks for awaitables and completes the value through
five type tests. For a page of a hundred evidence items that is a thousand fields, and most of
the time a heavy read takes. The objects on such pages are plain data already: the resolver
that loaded them checked the caller's role and party, and their fields only read attributes.

`PlainFieldsExecutionContext` completes such an object in one step: for each selection set it
compiles a plan once per request (response key → attribute, leaf coercion or a nested plan)
and applies it to every object of that selection. A field whose resolver takes arguments,
`info`, runs field extensions or is async is not plain; an object with one such field selected
is executed field by field as before. Anything out of the ordinary while applying a plan (a
null where the schema says non-null, a value the scalar refuses, an object of another type)
abandons the plan for that object and executes it the standard way, so errors, their paths
and the answer are exactly what graphql-core gives.
"""
from __future__ import annotations

import inspect
from operator import attrgetter
from typing import Any, Callable

from graphql import (
    GraphQLNonNull, GraphQLObjectType, is_leaf_type, is_list_type, is_non_null_type, is_object_type,
)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


class _NotPlain(Exception):
    """This object (or one inside it) cannot be completed by a plan: execute it field by field."""


_NOT_PLAIN = _NotPlain()
_NO_PLAN = object()  # a selection set with a field that is not plain


def _reads_only_self(field: Any) -> Callable[[Any], Any] | None:
    """The getter of a strawberry field that is a pure read of its object, or None.

    A basic field (no resolver, no extensions) reads the attribute; a resolver that takes only
    `self` (no arguments, no info, not async, no field extensions) is called with the object."""
    if field is None or field.extensions:
        return None
    resolver = field.base_resolver
    if resolver is None:
        name, read = field.python_name, field.default_resolver
        return attrgetter(name) if read is getattr else (lambda source: read(source, name))
    if resolver.is_async or field.arguments:
        return None
    func = resolver.wrapped_func
    if not inspect.isfunction(func) or list(inspect.signature(func).parameters) != ["self"]:
        return None
    return func


def _same(value: Any) -> Any:
    return value


class PlainFieldsExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's execution, with plain-data objects completed by a compiled plan (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plans: dict[tuple[int, int], Any] = {}

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
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._compile(return_type, field_details_list)
        return plan

    def _compile(self, return_type: GraphQLObjectType, field_details_list) -> Any:
        definition = (return_type.extensions or {}).get("strawberry-definition")
        if definition is None:
            return _NO_PLAN
        grouped, defer_usages, _forbidden = self.collect_subfields(return_type, field_details_list)
        if defer_usages:
            return _NO_PLAN
        # (response key, getter, completion of a non-null value, whether the field is non-null)
        steps: list[tuple[str, Callable[[Any], Any], Callable[[Any], Any], bool]] = []
        for response_key, details in grouped.items():
            if any(d.defer_usage is not None or d.fragment_variable_values for d in details):
                return _NO_PLAN
            name = details[0].node.name.value
            if name == "__typename":
                type_name = return_type.name
                steps.append((response_key, lambda _s, n=type_name: n, _same, True))
                continue
            field_def = return_type.fields.get(name)
            if field_def is None or details[0].node.arguments:
                return _NO_PLAN
            getter = _reads_only_self((field_def.extensions or {}).get("strawberry-definition"))
            if getter is None:
                return _NO_PLAN
            required = is_non_null_type(field_def.type)
            complete = self._completer(field_def.type.of_type if required else field_def.type, details)
            if complete is None:
                return _NO_PLAN
            steps.append((response_key, getter, complete, required))
        is_type_of = return_type.is_type_of
        own_class = definition.origin  # an instance of exactly this class is of this type: no need to ask

        def apply(source: Any, info: Any = None) -> dict[str, Any]:
            if is_type_of is not None and type(source) is not own_class and not is_type_of(source, info):
                raise _NOT_PLAIN
            out = {}
            for response_key, getter, complete, required in steps:
                value = getter(source)
                if value is None:
                    if required:
                        raise _NOT_PLAIN
                    out[response_key] = None
                    continue
                completed = complete(value)
                if completed is None:  # a leaf the scalar would not coerce: graphql-core says how
                    raise _NOT_PLAIN
                out[response_key] = completed
            return out
        return apply

    def _completer(self, type_: Any, details) -> Callable[[Any], Any] | None:
        """How to complete a non-null value of `type_`; None if not by a plan."""
        if is_non_null_type(type_):
            inner = self._completer(type_.of_type, details)
            if inner is None:
                return None

            def non_null(value: Any) -> Any:
                completed = inner(value)
                if completed is None:
                    raise _NOT_PLAIN
                return completed
            return non_null
        if is_list_type(type_):
            item_type = type_.of_type
            item = self._completer(item_type, details)
            if item is None:
                return None
            item_non_null = is_non_null_type(item_type)

            def complete_list(value: Any) -> list:
                if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
                    raise _NOT_PLAIN
                out = []
                for x in value:
                    if x is None:
                        if item_non_null:
                            raise _NOT_PLAIN
                        out.append(None)
                    else:
                        completed = item(x)
                        if completed is None:  # a leaf the scalar would not coerce
                            raise _NOT_PLAIN
                        out.append(completed)
                return out
            return complete_list
        if is_leaf_type(type_):
            return type_.coerce_output_value
        if is_object_type(type_):
            plan = self._plan(type_, details)
            if plan is _NO_PLAN:
                return None
            return plan
        return None  # interfaces and unions: their runtime type is resolved field by field

