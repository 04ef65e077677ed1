"""Integration tests: real brokers, real ptys, real Modbus, real processes."""
