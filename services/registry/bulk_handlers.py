"""Bulk import and export of devices (CSV), streamed both ways.

Import reads records as chunks arrive and writes every `batch_size` valid rows in one unit of work:
the batch's devices, their auto sensors and all their events commit together (DeviceCreated,
SensorAdded, DeviceUpdated, exactly as CreateDevice/UpdateDevice emit them). Bad rows are reported
and never reach a batch, so they cost no valid row. Export pages through the fleet with the
ListDevices filter, one short transaction per page.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import structlog
from google.protobuf.field_mask_pb2 import FieldMask

from muster.registry.v1 import events_pb2 as ev
from muster.runtime.auth import Principal
from muster.runtime.db import Scope
from muster.runtime.errors import FieldViolation
from muster.runtime.listing import Page
from muster.runtime.pagination import MAX_PAGE_SIZE, PageTokens
from services.registry import bulk, listings
from services.registry.bulk import Outcome, RowResult
from services.registry.bulk_csv import (
    EXPORT_COLUMNS,
    Header,
    ParsedRow,
    RecordSplitter,
    RecordTooLong,
    RowError,
    device_cells,
    parse_row,
    to_csv,
)
from services.registry.bulk_repository import BatchConflict
from services.registry.domain import Device, new_device_id
from services.registry.mapping import device_to_proto
from services.registry.template_mapping import sensor_to_proto
from services.registry.templates import DeviceTemplate, Sensor, missing_required_sensors
from services.registry.unit_of_work import RegistryUnitOfWork, UnitOfWorkFactory

Clock = Callable[[], datetime]
DEFAULT_BATCH_SIZE = 500
_log = structlog.get_logger("registry.bulk")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _step_durations(started: float, marks: dict[str, float]) -> dict[str, float]:
    """perf_counter marks taken at the end of each step -> how long each step took (ms)."""
    durations, previous = {}, started
    for step, mark in marks.items():
        durations[step], previous = round((mark - previous) * 1000, 3), mark
    return durations


@dataclass
class ImportReport:
    validate_only: bool
    results: list[RowResult] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome is outcome)

    def finish(self) -> ImportReport:
        self.results.sort(key=lambda r: r.row)
        return self


@dataclass
class _References:
    """Sites and templates already looked up during this import (a file names few distinct ones)."""

    sites: dict[str, bool] = field(default_factory=dict)
    templates: dict[str, DeviceTemplate | None] = field(default_factory=dict)

    async def problems(self, uow: RegistryUnitOfWork, device: Device) -> list[FieldViolation]:
        found: list[FieldViolation] = []
        if device.site_id is not None:
            if device.site_id not in self.sites:
                self.sites[device.site_id] = await uow.sites.get(device.site_id) is not None
            if not self.sites[device.site_id]:
                found.append(FieldViolation("site", f"site sites/{device.site_id} does not exist"))
        if device.template_id is not None and await self.template(uow, device.template_id) is None:
            found.append(FieldViolation("template", f"template templates/{device.template_id} does not exist"))
        return found

    async def template(self, uow: RegistryUnitOfWork, template_id: str) -> DeviceTemplate | None:
        if template_id not in self.templates:
            self.templates[template_id] = await uow.templates.get(template_id)
        return self.templates[template_id]


@dataclass
class _Batch:
    created: list[Device] = field(default_factory=list)
    updated: list[tuple[Device, frozenset[str]]] = field(default_factory=list)
    sensors: list[Sensor] = field(default_factory=list)
    results: list[RowResult] = field(default_factory=list)


class BulkHandlers:
    def __init__(self, uow: UnitOfWorkFactory, page_tokens: PageTokens, clock: Clock = _utcnow,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self._uow = uow
        self._pages = page_tokens
        self._now = clock
        self._batch_size = batch_size

    # --- import ------------------------------------------------------------------------------

    async def import_devices(self, principal: Principal, chunks: AsyncIterable[bytes], *,
                             validate_only: bool) -> ImportReport:
        scope = Scope.of_tenant(principal.require_tenant())
        report = ImportReport(validate_only)
        splitter = RecordSplitter()
        header: Header | None = None
        first_row: dict[tuple[str, str], int] = {}  # key -> the row that used it first
        pending: list[ParsedRow] = []
        references = _References()

        def take(row: int, cells: list[str] | None, problem: str) -> None:
            nonlocal header
            if cells is None:
                report.results.append(bulk.error(row, "", FieldViolation("", problem)))
                return
            if header is None:
                header = Header.parse(cells)  # INVALID_ARGUMENT before anything is written
                return
            if not any(c.strip() for c in cells):
                return  # blank line
            parsed = parse_row(header, row, cells)
            if isinstance(parsed, RowError):
                report.results.append(bulk.error(row, parsed.serial, *parsed.violations))
                return
            key = ("serial", parsed.serial) if parsed.serial else ("name", parsed.device_id or "")
            if key in first_row:
                report.results.append(bulk.error(row, parsed.serial, FieldViolation(
                    key[0], f"repeats the {key[0]} of row {first_row[key]}: each device once per file")))
                return
            first_row[key] = row
            pending.append(parsed)

        try:
            async for chunk in chunks:
                for record in splitter.feed(chunk):
                    take(record.row, record.cells, record.problem)
                    if len(pending) >= self._batch_size:
                        report.results += await self._write(scope, pending, references, validate_only)
                        pending.clear()
            for record in splitter.close():
                take(record.row, record.cells, record.problem)
        except RecordTooLong as exc:
            report.results.append(bulk.error(exc.row, "", FieldViolation("", f"{exc}; rows from here on were "
                                                                             "not read")))
        if header is None:
            Header.parse([])  # an empty file: refused like a file without the key column
        if pending:
            report.results += await self._write(scope, pending, references, validate_only)
        return report.finish()

    async def _write(self, scope: Scope, rows: list[ParsedRow], references: _References,
                     validate_only: bool) -> list[RowResult]:
        """One batch in one unit of work; retried once if a concurrent writer took one of its serials or
        changed one of its devices (the retry plans the batch again against the new state).
        Logs `bulk.batch` with its size and duration (bench/import.py reads these for percentiles)."""
        for attempt in range(2):
            started = time.perf_counter()
            try:
                steps: dict[str, float] = {}
                async with self._uow(scope) as uow:
                    batch = await self._plan(uow, scope, rows, references, validate_only=validate_only)
                    steps["plan_ms"] = time.perf_counter()
                    if not validate_only:
                        await self._persist(uow, batch, steps)
                        await uow.commit()
                        steps["commit_ms"] = time.perf_counter()
                _log.info("bulk.batch", rows=len(rows), created=len(batch.created), updated=len(batch.updated),
                          validate_only=validate_only, duration_ms=round((time.perf_counter() - started) * 1000, 3),
                          **_step_durations(started, steps))
                return batch.results
            except BatchConflict:
                if attempt:
                    raise
                references.sites.clear()
                references.templates.clear()
        raise AssertionError("unreachable")

    async def _plan(self, uow: RegistryUnitOfWork, scope: Scope, rows: list[ParsedRow], references: _References,
                    *, validate_only: bool) -> _Batch:
        tenant = scope.tenant or ""
        now = self._now()
        by_serial = await uow.bulk.by_serials({r.serial for r in rows if r.serial})
        by_id = await uow.bulk.by_ids({r.device_id for r in rows if r.device_id})
        batch = _Batch()
        retemplated: list[Device] = []
        for row in rows:
            current = by_serial.get(row.serial) if row.serial else by_id.get(row.device_id or "")
            named = by_id.get(row.device_id) if row.device_id else None
            key_problem = bulk.key_problem(row, by_serial.get(row.serial) if row.serial else None, named)
            if key_problem is not None:
                batch.results.append(bulk.error(row.row, row.serial, key_problem))
                continue
            if current is None:
                device = bulk.new_device(row, tenant_id=tenant, device_id=new_device_id(), now=now)
                changed = frozenset({"*"})
            else:
                device, changed = bulk.apply_row(current, row, now)
                if not changed:
                    batch.results.append(RowResult(row.row, row.serial, Outcome.UNCHANGED, current.id))
                    continue
            problems = bulk.check(device) + await references.problems(uow, device)
            if problems:
                batch.results.append(bulk.error(row.row, row.serial, *problems))
            elif current is None:
                batch.created.append(device)
                batch.results.append(RowResult(row.row, row.serial, Outcome.CREATED,
                                               "" if validate_only else device.id))
            else:
                batch.updated.append((device, changed))
                batch.results.append(RowResult(row.row, row.serial, Outcome.UPDATED, device.id))
                if "template" in changed:
                    retemplated.append(device)
        existing = await uow.bulk.sensor_keys([d.id for d in retemplated])
        for device in [*batch.created, *retemplated]:
            template = await references.template(uow, device.template_id) if device.template_id else None
            if template is not None:
                batch.sensors += missing_required_sensors(template, existing.get(device.id, set()),
                                                          tenant_id=tenant, device_id=device.id, now=now)
        return batch

    @staticmethod
    async def _persist(uow: RegistryUnitOfWork, batch: _Batch, steps: dict[str, float]) -> None:
        planned = {device.id: device.version - 1 for device, _ in batch.updated}
        if await uow.bulk.lock_versions(planned) != planned:
            raise BatchConflict("a device of this batch was changed concurrently")
        await uow.bulk.insert_devices(batch.created)
        await uow.bulk.update_devices([device for device, _ in batch.updated])
        await uow.bulk.insert_sensors(batch.sensors)
        steps["write_ms"] = time.perf_counter()
        for device in batch.created:
            uow.emit(ev.DeviceCreated(device=device_to_proto(device)), subject=device.name)
        for device, changed in batch.updated:
            uow.emit(ev.DeviceUpdated(device=device_to_proto(device), update_mask=FieldMask(paths=sorted(changed))),
                     subject=device.name)
        for sensor in batch.sensors:
            uow.emit(ev.SensorAdded(sensor=sensor_to_proto(sensor)), subject=sensor.name)
        steps["events_ms"] = time.perf_counter()

    # --- export ------------------------------------------------------------------------------

    def export_devices(self, principal: Principal, filter_text: str) -> AsyncIterator[str]:
        """CSV text chunks, header first. The filter is checked before the first chunk is produced."""
        tenant = principal.require_tenant()
        page = listings.DEVICES.page(self._pages, filter_text=filter_text, order_by="", size=MAX_PAGE_SIZE,
                                     token="", scope=f"export:{tenant}")
        return self._export(Scope.of_tenant(tenant), page)

    async def _export(self, scope: Scope, page: Page) -> AsyncIterator[str]:
        yield to_csv([EXPORT_COLUMNS])
        while True:
            async with self._uow(scope) as uow:
                devices = await uow.devices.list(page)
            shown = devices[: page.limit]
            if shown:
                yield to_csv([device_cells(d) for d in shown])
            if len(devices) <= page.limit:
                return
            last = shown[-1]
            page = replace(page, after=[getattr(last, term.field) for term in page.order] + [last.id])
