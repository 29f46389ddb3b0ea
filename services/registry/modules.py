"""Expansion modules in the slots of a device's template. No I/O here."""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from muster.runtime.errors import FailedPrecondition, FieldViolation, InvalidArgument
from services.registry.domain import ID_PATTERN, MAX_SERIAL, validate_display_name, validate_text
from services.registry.templates import KEY_PATTERN, DeviceTemplate

MAX_KEY_MAP = 200
_ALPHABET = string.ascii_lowercase + string.digits


def new_module_id() -> str:
    return "m" + "".join(secrets.choice(_ALPHABET) for _ in range(11))


@dataclass(frozen=True)
class Module:
    tenant_id: str
    device_id: str
    id: str
    slot: str
    template_id: str
    create_time: datetime
    update_time: datetime
    serial: str = ""
    label: str = ""
    metric_key_map: Mapping[str, str] = field(default_factory=dict)
    version: int = 1

    @property
    def name(self) -> str:
        return f"devices/{self.device_id}/modules/{self.id}"


def validate_module(module: Module, path: str = "module") -> None:
    problems: list[FieldViolation] = []
    if not ID_PATTERN.match(module.id):
        problems.append(FieldViolation("module_id", "must be 3-40 of [a-z0-9-], starting with a letter"))
    problems += validate_text(module.serial, f"{path}.serial", MAX_SERIAL)
    problems += validate_display_name(module.label, f"{path}.label", required=False)
    if len(module.metric_key_map) > MAX_KEY_MAP:
        problems.append(FieldViolation(f"{path}.metric_key_map", f"has {len(module.metric_key_map)} entries; "
                                                                 f"at most {MAX_KEY_MAP}"))
    for raw, semantic in module.metric_key_map.items():
        if not KEY_PATTERN.match(raw) or not KEY_PATTERN.match(semantic):
            problems.append(FieldViolation(f"{path}.metric_key_map.{raw}",
                                           "keys and values are 1-63 of [a-z0-9_], starting with a letter"))
    if problems:
        raise InvalidArgument("; ".join(f"{p.field}: {p.description}" for p in problems), violations=problems)


def check_slot(device_template: DeviceTemplate | None, module: Module, occupied: int) -> None:
    """May `module` go into its slot of a device with `device_template`, `occupied` modules already there?"""
    if device_template is None:
        raise FailedPrecondition(f"devices/{module.device_id} has no template, so it has no slots: set its "
                                 "template first", reason="DEVICE_HAS_NO_TEMPLATE")
    slot = next((s for s in device_template.slots if s.name == module.slot), None)
    if slot is None:
        known = ", ".join(s.name for s in device_template.slots) or "none"
        raise InvalidArgument.field("module.slot", f"{device_template.name} has no slot {module.slot!r} "
                                                   f"(slots: {known})")
    if slot.accepted_templates and module.template_id not in slot.accepted_templates:
        accepted = ", ".join(f"templates/{t}" for t in slot.accepted_templates)
        raise InvalidArgument.field("module.template", f"slot {slot.name!r} accepts only {accepted}")
    if slot.max_devices and occupied >= slot.max_devices:
        raise FailedPrecondition(f"slot {slot.name!r} of devices/{module.device_id} is full ({occupied} of "
                                 f"{slot.max_devices})", reason="SLOT_FULL",
                                 metadata={"slot": slot.name, "max_devices": str(slot.max_devices)})
