"""One construct per capability of the api stack: functions, HTTP API, schedules, monitoring."""
