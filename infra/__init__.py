"""The fleetlink CDK app: stacks, constants and (later) one construct per capability."""
