"""The kit's ProtoEnum, typed with each protobuf enum's own value type.

The generated message constructors take `SomeEnum.ValueType` (a NewType of int), and the kit's
`ProtoEnum.to_proto` answers a plain int; this subclass carries the value type along, so a
mapping is passed to a message with no cast at every call site.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Generic, TypeVar, cast

from pos_kit.enums import ProtoEnum

if TYPE_CHECKING:
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper

E = TypeVar("E", bound=Enum)
V = TypeVar("V", bound=int)


class ProtoValues(ProtoEnum[E], Generic[E, V]):
    def __init__(self, domain: type[E], proto: _EnumTypeWrapper[V]) -> None:
        super().__init__(domain, proto)

    def to_proto(self, value: E) -> V:
        return cast(V, super().to_proto(value))
