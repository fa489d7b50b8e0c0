"""The embedded dev stack: HTTP server → API Gateway v2 events → the Lambda handlers, on moto."""
