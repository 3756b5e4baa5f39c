"""Local stand-ins for the external systems: loopback servers and file generators speaking the published formats."""
