"""The OpenAPI document for the public JSON API (`/api/openapi.json`)."""

from __future__ import annotations

from typing import Any

from display.domain import OUTCOMES, SATISFACTIONS, STAGES

_town = {
    "name": "town",
    "in": "query",
    "required": False,
    "description": "Town slug (e.g. longshi) or name (龙市镇); omit for the whole county.",
    "schema": {"type": "string"},
}

CASE: dict[str, Any] = {
    "type": "object",
    "description": "The anonymized public copy of a case. Sensitive cases have no summary "
    "and no village.",
    "properties": {
        "no": {"type": "string", "description": "The case number the citizen was given."},
        "town": {"type": "string"},
        "village": {"type": ["string", "null"]},
        "kind": {"type": "string", "enum": ["consult", "general"]},
        "category": {"type": ["string", "null"]},
        "channel": {"type": ["string", "null"]},
        "department": {"type": ["string", "null"]},
        "stage": {"type": "string", "enum": list(STAGES)},
        "stage_label": {"type": "string"},
        "outcome": {"type": ["string", "null"], "enum": [*OUTCOMES, None]},
        "summary": {"type": ["string", "null"], "description": "Redacted summary."},
        "sensitive": {"type": "boolean"},
        "received_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "resolved_at": {"type": ["string", "null"], "format": "date-time"},
        "replied_at": {"type": ["string", "null"], "format": "date-time"},
        "due_date": {"type": ["string", "null"], "format": "date"},
        "due_estimated": {
            "type": "boolean",
            "description": "The holiday calendar had no data for a year "
            "counted; Monday–Friday was assumed.",
        },
        "days_left": {"type": ["integer", "null"], "description": "Working days left."},
        "overdue": {"type": "boolean"},
        "supervised": {"type": "boolean", "description": "督办"},
        "satisfaction": {"type": ["string", "null"], "enum": [*SATISFACTIONS, None]},
    },
    "required": ["no", "town", "stage", "kind", "received_at"],
}

STATS: dict[str, Any] = {
    "type": "object",
    "properties": {
        k: {"type": "integer"}
        for k in (
            "received",
            "resolved",
            "open",
            "in_progress",
            "explained",
            "planned",
            "overdue",
            "supervised",
        )
    }
    | {
        k: {"type": ["number", "null"], "description": "percent"}
        for k in ("resolution_rate", "on_time_rate", "satisfaction_rate")
    },
}

ERROR = {"type": "object", "properties": {"error": {"type": "string"}}}


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "yizheng 议政 public API",
        "version": "1",
        "description": "Anonymized progress of citizens' appeals. No personal data.",
    },
    "paths": {
        "/api/v1/cases": {
            "get": {
                "summary": "List cases",
                "parameters": [
                    _town,
                    {
                        "name": "stage",
                        "in": "query",
                        "schema": {"type": "string", "enum": [*STAGES, "open"]},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
                    },
                    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                ],
                "responses": {
                    "200": _ok(
                        {
                            "type": "object",
                            "properties": {"cases": {"type": "array", "items": CASE}},
                        }
                    ),
                    "400": _ok(ERROR, "Bad parameter"),
                    "404": _ok(ERROR, "Unknown town"),
                },
            }
        },
        "/api/v1/cases/{no}": {
            "get": {
                "summary": "One case with its timeline",
                "parameters": [
                    {"name": "no", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": _ok(CASE), "404": _ok(ERROR, "Unknown case number")},
            }
        },
        "/api/v1/stats": {
            "get": {
                "summary": "Figures for a town or the county (all time, this year, this month)",
                "parameters": [_town],
                "responses": {"200": _ok(STATS), "404": _ok(ERROR, "Unknown town")},
            }
        },
        "/api/v1/boards": {
            "get": {
                "summary": "Boards with online/offline and last seen",
                "responses": {"200": _ok({"type": "object"})},
            }
        },
        "/events": {
            "get": {
                "summary": "Server-sent events: case, notice, stats, reset",
                "parameters": [
                    _town,
                    {"name": "last_event_id", "in": "query", "schema": {"type": "integer"}},
                ],
                "responses": {"200": {"description": "text/event-stream"}},
            }
        },
    },
}
