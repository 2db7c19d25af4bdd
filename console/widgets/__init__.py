"""Widgets grouped by screen region: servers, detail, logs, jobs, charts."""
