"""DynamoDB single-table adapters (PynamoDB) for the core ports."""
