"""Unit tests: each piece alone, no brokers, no ptys."""
