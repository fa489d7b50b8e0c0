"""Pure domain: entities, use cases, ports and errors. No AWS or web framework imports here."""
